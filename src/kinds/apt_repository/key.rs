//! A repository's signing key, told apart by its content: armored (`gpg --armor --export`, what
//! vendors publish as `.asc` or `.key`) or binary (`gpg --export`, a `.gpg` keyring). apt reads
//! each by its file name's extension (sources.list(5), `Signed-By`), so the kind names the file
//! after what it holds.

/// How a key is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyFormat {
    /// ASCII armor: `-----BEGIN PGP PUBLIC KEY BLOCK-----`.
    Armored,
    /// OpenPGP packets, starting with a public key packet.
    Binary,
}

impl KeyFormat {
    /// Both, in the order their files are looked at.
    pub const ALL: [KeyFormat; 2] = [KeyFormat::Armored, KeyFormat::Binary];

    /// The extension apt reads it by.
    pub fn extension(self) -> &'static str {
        match self {
            KeyFormat::Armored => "asc",
            KeyFormat::Binary => "gpg",
        }
    }

    /// What `bytes` hold, or why they are no public key apt can read.
    pub fn of(bytes: &[u8]) -> Result<KeyFormat, &'static str> {
        let text = String::from_utf8_lossy(&bytes[..bytes.len().min(64)]);
        let armor = text.trim_start();
        if armor.starts_with("-----BEGIN PGP PUBLIC KEY BLOCK-----") {
            return Ok(KeyFormat::Armored);
        }
        if armor.starts_with("-----BEGIN PGP PRIVATE KEY BLOCK-----") {
            return Err("it is a private key: give the public one (`gpg --armor --export`), never the secret");
        }
        if armor.starts_with("-----BEGIN PGP") {
            return Err("it is armored, but not a public key block");
        }
        // A public key packet: the old format's tag 6 (0x98-0x9b by length type) or the new one's.
        match bytes.first() {
            Some(0x98..=0x9b | 0xc6) => Ok(KeyFormat::Binary),
            _ if bytes.get(8..12) == Some(b"KBXf") => {
                Err("it is a GnuPG keybox, which apt cannot read: export the key with `gpg --export`")
            }
            _ => Err("it is neither an armored public key block nor a binary OpenPGP key"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tells_the_formats_apart_by_content() {
        let armored = b"\n-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nmDMEZ...\n-----END PGP PUBLIC KEY BLOCK-----\n";
        assert_eq!(KeyFormat::of(armored), Ok(KeyFormat::Armored));
        // gpg --export of an ed25519 key, and of an RSA key.
        assert_eq!(KeyFormat::of(&[0x98, 0x33, 0x04, 0x65]), Ok(KeyFormat::Binary));
        assert_eq!(KeyFormat::of(&[0x99, 0x02, 0x0d, 0x04]), Ok(KeyFormat::Binary));
        assert_eq!(KeyFormat::of(&[0xc6, 0x33, 0x04]), Ok(KeyFormat::Binary));
        assert_eq!(KeyFormat::Armored.extension(), "asc");
        assert_eq!(KeyFormat::Binary.extension(), "gpg");
    }

    #[test]
    fn refuses_what_is_no_public_key() {
        let keybox = b"\x00\x00\x00\x20\x01\x01\x00\x00KBXf\x00\x00";
        assert!(KeyFormat::of(keybox).unwrap_err().contains("keybox"));
        assert!(KeyFormat::of(b"-----BEGIN PGP PRIVATE KEY BLOCK-----\n").unwrap_err().contains("private"));
        assert!(KeyFormat::of(b"-----BEGIN PGP SIGNATURE-----\n").is_err());
        assert!(KeyFormat::of(b"https://nginx.org/keys/nginx_signing.key").is_err());
        assert!(KeyFormat::of(b"").is_err());
    }
}
