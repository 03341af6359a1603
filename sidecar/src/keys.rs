//! age keys: generating identities and reading them for restore and verify.

use std::str::FromStr;

use crate::secret::{read_secret_file, Secret};

/// A new identity as an age key file, plus its public recipient.
pub fn generate() -> (Secret, String) {
    use age::secrecy::ExposeSecret;
    let id = age::x25519::Identity::generate();
    let recipient = id.to_public().to_string();
    let text = format!(
        "# created: {}\n# public key: {recipient}\n{}\n",
        chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        id.to_string().expose_secret()
    );
    (Secret::new(text), recipient)
}

/// Read the identities of an age key file (comments and blank lines ignored).
pub fn read_identities(path: &str) -> Result<Vec<age::x25519::Identity>, String> {
    let text = read_secret_file(path, "age identity").map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for line in text.expose().lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let id = age::x25519::Identity::from_str(line).map_err(|_| {
            format!("{path} is not an age identity file (expected AGE-SECRET-KEY-1... lines): create one with `arca keygen`")
        })?;
        out.push(id);
    }
    if out.is_empty() {
        return Err(format!(
            "{path} holds no age identity: create one with `arca keygen`"
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_read_back() -> Result<(), Box<dyn std::error::Error>> {
        let (text, recipient) = generate();
        assert!(recipient.starts_with("age1"));
        let dir = tempfile::tempdir()?;
        let p = dir.path().join("key.txt");
        std::fs::write(&p, text.expose())?;
        let ids = read_identities(p.to_str().unwrap_or_default())?;
        assert_eq!(ids.len(), 1);
        assert_eq!(ids[0].to_public().to_string(), recipient);
        std::fs::write(&p, "not a key\n")?;
        assert!(read_identities(p.to_str().unwrap_or_default()).is_err());
        Ok(())
    }
}
