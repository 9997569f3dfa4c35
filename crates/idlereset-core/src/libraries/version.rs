//! Dotted library versions (`2.7.9`, `42.5.5`, `1.23`, `17`) and their order.
//!
//! Hand-rolled rather than the `semver` crate: library versions here are not all semver (Go
//! `1.23`, Java `17`, PostgreSQL `17.0`), and a missing component must compare as 0.

use std::cmp::Ordering;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A version: up to four numeric components; missing ones are 0.
#[derive(Debug, Clone, Copy)]
pub struct Version {
    parts: [u32; 4],
    len: u8,
}

/// Why a version string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("version {text:?} is not dotted numbers like 2.7.9 (component {component})")]
pub struct VersionError {
    /// The version text as given.
    pub text: String,
    /// 1-based component that failed.
    pub component: usize,
}

impl Version {
    /// Parse `x`, `x.y`, `x.y.z` or `x.y.z.w`; a leading `v` and a `-suffix` are ignored.
    pub fn parse(text: &str) -> Result<Version, VersionError> {
        let err = |component| VersionError {
            text: text.to_string(),
            component,
        };
        let t = text.trim().trim_start_matches('v');
        let t = t.split(['-', '+']).next().unwrap_or(t);
        let mut parts = [0u32; 4];
        let mut len = 0u8;
        for (i, p) in t.split('.').enumerate() {
            let slot = parts.get_mut(i).ok_or_else(|| err(i + 1))?;
            *slot = p.parse().map_err(|_| err(i + 1))?;
            len += 1;
        }
        Ok(Version { parts, len })
    }
}

impl PartialEq for Version {
    fn eq(&self, o: &Version) -> bool {
        self.parts == o.parts
    }
}

impl Eq for Version {}

impl Ord for Version {
    fn cmp(&self, o: &Version) -> Ordering {
        self.parts.cmp(&o.parts)
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, o: &Version) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = usize::from(self.len.max(1));
        let s: Vec<String> = self.parts[..n].iter().map(u32::to_string).collect();
        f.write_str(&s.join("."))
    }
}

impl Serialize for Version {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Version {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Version, D::Error> {
        let s = String::deserialize(d)?;
        Version::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        Version::parse(s).expect("version")
    }

    #[test]
    fn orders_numerically_with_missing_parts_as_zero() {
        assert!(v("2.7.9") < v("4.0.1"));
        assert!(v("4.0.1") < v("4.0.10"));
        assert_eq!(v("1.23"), v("1.23.0"));
        assert!(v("v1.22.5") < v("1.23"));
        assert!(v("17") > v("11.0.2"));
        assert_eq!(v("8.1.0-rc1").to_string(), "8.1.0");
    }

    #[test]
    fn refuses_garbage_with_the_component() {
        assert_eq!(Version::parse("2.x").unwrap_err().component, 2);
        assert_eq!(Version::parse("1.2.3.4.5").unwrap_err().component, 5);
        assert!(Version::parse("").is_err());
    }
}
