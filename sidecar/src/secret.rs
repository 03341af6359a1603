//! Secrets read from files. They never reach argv, logs, manifests or results: `Debug`
//! and `Display` are redacted, and the value is only handed to a child's environment or a
//! private temporary file.

use std::fmt;
use std::path::Path;

/// A secret value (password, key).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wrap a value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value; only for handing to a client library or a child's environment.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// A secret file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// Unreadable.
    #[error("cannot read the {what} file {path}: {source}; check that it exists and is readable by arca")]
    Read {
        /// What the file holds.
        what: String,
        /// Its path.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Empty.
    #[error("the {what} file {path} is empty: put the {what} in it")]
    Empty {
        /// What the file holds.
        what: String,
        /// Its path.
        path: String,
    },
}

/// Read a secret file, dropping one trailing newline (as editors and `echo` add).
pub fn read_secret_file(path: &str, what: &str) -> Result<Secret, SecretError> {
    let text = std::fs::read_to_string(Path::new(path)).map_err(|source| SecretError::Read {
        what: what.to_string(),
        path: path.to_string(),
        source,
    })?;
    let value = text
        .strip_suffix("\r\n")
        .or_else(|| text.strip_suffix('\n'))
        .unwrap_or(&text);
    if value.is_empty() {
        return Err(SecretError::Empty {
            what: what.to_string(),
            path: path.to_string(),
        });
    }
    Ok(Secret(value.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_are_redacted() {
        let s = Secret::new("hunter2");
        assert!(!format!("{s:?} {s}").contains("hunter2"));
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn reads_and_trims_one_newline() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let p = dir.path().join("pw");
        std::fs::write(&p, "pa ss\n")?;
        let s = read_secret_file(p.to_str().unwrap_or_default(), "password")?;
        assert_eq!(s.expose(), "pa ss");
        std::fs::write(&p, "\n")?;
        let err = read_secret_file(p.to_str().unwrap_or_default(), "password").expect_err("empty");
        assert!(err.to_string().contains("is empty"));
        let err = read_secret_file("/nonexistent/pw", "password").expect_err("missing");
        assert!(err
            .to_string()
            .contains("cannot read the password file /nonexistent/pw"));
        Ok(())
    }
}
