//! Read-only memory maps of files, for analysers that scan whole files at memory speed
//! (`logs` over gigabyte logs).
//!
//! Mapping avoids copying the file through a read buffer and lets the SIMD searchers in
//! `idlereset-core` see the whole file as one `&[u8]`. Pipes, character devices and empty files
//! cannot be mapped; they are read into memory instead, so callers never need to care.

use std::fs::File;
use std::io::Read;
use std::ops::Deref;
use std::path::Path;

use crate::error::{LinuxError, Result};

/// A file's bytes: mapped when possible, read otherwise.
#[derive(Debug)]
pub enum MappedFile {
    Mapped(memmap2::Mmap),
    Read(Vec<u8>),
}

impl MappedFile {
    /// Map `path` read-only (or read it when it is not a regular, non-empty file).
    pub fn open(path: &Path) -> Result<MappedFile> {
        let mut file = File::open(path).map_err(|e| LinuxError::io("open", path, e))?;
        let meta = file
            .metadata()
            .map_err(|e| LinuxError::io("stat", path, e))?;
        if meta.is_file() && meta.len() > 0 {
            // SAFETY: the map is read-only and private to this process. If another process
            // truncates the file while it is mapped, reads past the new end raise SIGBUS; that is
            // the documented risk of mapping logs (ripgrep takes the same one) and is not memory
            // unsafety within this process's own writes.
            let map = unsafe { memmap2::Mmap::map(&file) }
                .map_err(|e| LinuxError::io("mmap", path, e))?;
            return Ok(MappedFile::Mapped(map));
        }
        let mut buf = Vec::new();
        file.read_to_end(&mut buf)
            .map_err(|e| LinuxError::io("read", path, e))?;
        Ok(MappedFile::Read(buf))
    }
}

impl Deref for MappedFile {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            MappedFile::Mapped(m) => m,
            MappedFile::Read(v) => v,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn maps_regular_files_and_reads_empty_ones() {
        let dir = std::env::temp_dir().join(format!("idlereset-mapped-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let full = dir.join("full.log");
        std::fs::write(&full, b"line 1\nline 2\n").unwrap();
        let m = MappedFile::open(&full).unwrap();
        assert!(matches!(m, MappedFile::Mapped(_)));
        assert_eq!(&m[..], b"line 1\nline 2\n");
        let empty = dir.join("empty.log");
        std::fs::write(&empty, b"").unwrap();
        assert!(MappedFile::open(&empty).unwrap().is_empty());
        let err = MappedFile::open(&dir.join("missing.log")).unwrap_err();
        assert!(err.to_string().contains("missing.log"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
