//! Reading `logs` inputs block by block on a thread of their own.
//!
//! Files are read with `read(2)`, never mapped: a log rotated with `copytruncate` while it is
//! being read then only ends early (reported, and the report covers what was read) instead of
//! killing the process with SIGBUS. Pipes, standard input and character devices are read the
//! same way, one block at a time, so memory stays bounded (see
//! `idlereset_core::logs::lines`). The reader runs on its own thread and sends blocks over a
//! small bounded channel; the signal watcher sends [`Msg::Stop`] on the same channel, so Ctrl-C
//! ends a `--follow` or a quiet pipe at once and the summary is still printed.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::time::Duration;

use anyhow::Context;
use idlereset_core::logs::lines::DEFAULT_BLOCK;

/// What the reader thread tells the scanner.
pub enum Msg {
    /// A new input starts; `live` when it is a stream (pipe, standard input) or followed.
    Begin {
        name: String,
        live: bool,
    },
    Block(Vec<u8>),
    /// The file was `size` bytes at open but ended after `read`: truncated under us.
    Truncated {
        size: u64,
        read: u64,
    },
    /// The followed file was truncated or replaced; reading starts again at its beginning.
    Restarted {
        why: &'static str,
    },
    /// The input reached its end (or `--max-bytes`).
    End,
    Failed(anyhow::Error),
    /// Ctrl-C / SIGTERM.
    Stop,
    /// Every input was read.
    Done,
}

/// How inputs are read.
#[derive(Debug, Clone, Copy)]
pub struct ReadOptions {
    /// Keep reading the (single) input after its end, like `tail -F`.
    pub follow: bool,
    /// Stop reading each input after this many bytes.
    pub max_bytes: Option<u64>,
    /// How often a followed file is checked for new data.
    pub poll: Duration,
}

/// Start reading `files` in order; returns the receiving end and a sender for [`Msg::Stop`].
pub fn spawn(files: Vec<PathBuf>, opts: ReadOptions) -> (Receiver<Msg>, SyncSender<Msg>) {
    let (tx, rx) = sync_channel(4);
    let stop = tx.clone();
    std::thread::spawn(move || {
        for path in &files {
            match read_input(path, &tx, opts) {
                Ok(true) => {}
                Ok(false) => return,
                Err(e) => {
                    let _ = tx.send(Msg::Failed(e));
                    return;
                }
            }
        }
        let _ = tx.send(Msg::Done);
    });
    (rx, stop)
}

/// Read one input; `Ok(false)` when the receiver is gone.
fn read_input(path: &Path, tx: &SyncSender<Msg>, opts: ReadOptions) -> anyhow::Result<bool> {
    if path.as_os_str() == "-" {
        if tx
            .send(Msg::Begin {
                name: "<stdin>".into(),
                live: true,
            })
            .is_err()
        {
            return Ok(false);
        }
        let mut budget = opts.max_bytes;
        let r = pump(&mut std::io::stdin().lock(), tx, &mut budget)
            .context("reading standard input")?;
        return Ok(r.is_some() && tx.send(Msg::End).is_ok());
    }
    let mut file = File::open(path).with_context(|| format!("open {}", path.display()))?;
    let meta = file
        .metadata()
        .with_context(|| format!("stat {}", path.display()))?;
    let regular = meta.is_file();
    let name = path.display().to_string();
    if tx
        .send(Msg::Begin {
            name: name.clone(),
            live: !regular || opts.follow,
        })
        .is_err()
    {
        return Ok(false);
    }
    let mut budget = opts.max_bytes;
    let read_err = |e| anyhow::Error::new(e).context(format!("read {name}"));
    let Some(mut read) = pump(&mut file, tx, &mut budget).map_err(read_err)? else {
        return Ok(false);
    };
    let shrank = regular && !opts.follow && read < meta.len() && budget != Some(0);
    if shrank
        && tx
            .send(Msg::Truncated {
                size: meta.len(),
                read,
            })
            .is_err()
    {
        return Ok(false);
    }
    while regular && opts.follow && budget != Some(0) {
        std::thread::sleep(opts.poll);
        let now = file.metadata().map(|m| m.len()).unwrap_or(read);
        let replaced = std::fs::metadata(path)
            .map(|m| m.ino() != meta.ino() || m.dev() != meta.dev())
            .unwrap_or(false);
        let why = if now < read {
            file.seek(SeekFrom::Start(0)).map_err(read_err)?;
            Some("truncated (copytruncate)")
        } else if replaced && now == read {
            // Rotated by rename: the old file is read to its end; continue with the new one.
            file = File::open(path).with_context(|| format!("open {}", path.display()))?;
            Some("replaced (rotated)")
        } else {
            None
        };
        if let Some(why) = why {
            read = 0;
            if tx.send(Msg::Restarted { why }).is_err() {
                return Ok(false);
            }
        }
        match pump(&mut file, tx, &mut budget).map_err(read_err)? {
            Some(n) => read += n,
            None => return Ok(false),
        }
    }
    Ok(tx.send(Msg::End).is_ok())
}

/// Send blocks until end of input or the byte budget is spent. Returns the bytes sent, or `None`
/// when the receiver is gone.
fn pump(
    r: &mut impl Read,
    tx: &SyncSender<Msg>,
    budget: &mut Option<u64>,
) -> std::io::Result<Option<u64>> {
    let mut sent = 0u64;
    loop {
        let want = match *budget {
            Some(0) => return Ok(Some(sent)),
            Some(b) => usize::try_from(b)
                .unwrap_or(DEFAULT_BLOCK)
                .min(DEFAULT_BLOCK),
            None => DEFAULT_BLOCK,
        };
        let mut buf = vec![0u8; want];
        let n = match r.read(&mut buf) {
            Ok(0) => return Ok(Some(sent)),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        buf.truncate(n);
        sent += n as u64;
        if let Some(b) = budget.as_mut() {
            *b = b.saturating_sub(n as u64);
        }
        if tx.send(Msg::Block(buf)).is_err() {
            return Ok(None);
        }
    }
}

/// Send [`Msg::Stop`] on Ctrl-C / SIGTERM (a small runtime on its own thread).
pub fn stop_on_signal(tx: SyncSender<Msg>) {
    std::thread::spawn(move || {
        if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            rt.block_on(super::super::signals::shutdown());
            let _ = tx.send(Msg::Stop);
        }
    });
}
