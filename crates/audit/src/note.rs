//! C2SP `signed-note` with Ed25519: the text, a blank line, then one line per signature:
//! `— <name> <base64(key id ‖ signature)>`. Key id = first 4 bytes (big-endian) of
//! SHA-256(name ‖ "\n" ‖ 0x01 ‖ public key). Verifier keys are written
//! `<name>+<hex key id>+<base64(0x01 ‖ public key)>`, as Go's `golang.org/x/mod/sumdb/note`.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

const ALG_ED25519: u8 = 1;
const SIG_PREFIX: &str = "\u{2014} ";
/// Notes larger than this are refused before parsing.
const MAX_NOTE_BYTES: usize = 64 * 1024;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    #[error("note is malformed: {0}")]
    Malformed(&'static str),
    #[error("key name `{0}` is not valid (it must be non-empty, without spaces or `+`)")]
    BadName(String),
    #[error("verifier key is malformed")]
    BadKey,
    #[error("note is not signed by `{name}` with key id {id:08x}")]
    NotSigned { name: String, id: u32 },
    #[error("signature by `{name}` does not verify: the note was altered or signed by another key")]
    BadSignature { name: String },
}

fn name_ok(name: &str) -> bool {
    !name.is_empty() && !name.contains(char::is_whitespace) && !name.contains('+')
}

fn key_id(name: &str, public: &[u8; 32]) -> u32 {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update(b"\n");
    h.update([ALG_ED25519]);
    h.update(public);
    let d: [u8; 32] = h.finalize().into();
    let (first, _) = d.split_first_chunk::<4>().unwrap_or((&[0; 4], &[]));
    u32::from_be_bytes(*first)
}

/// Signs notes as `name` with an Ed25519 key.
#[derive(Clone)]
pub struct NoteSigner {
    name: String,
    key: SigningKey,
    id: u32,
}

impl std::fmt::Debug for NoteSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NoteSigner")
            .field("name", &self.name)
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl NoteSigner {
    pub fn new(name: &str, seed: &[u8; 32]) -> Result<Self, NoteError> {
        if !name_ok(name) {
            return Err(NoteError::BadName(name.to_owned()));
        }
        let key = SigningKey::from_bytes(seed);
        let id = key_id(name, key.verifying_key().as_bytes());
        Ok(Self {
            name: name.to_owned(),
            key,
            id,
        })
    }

    pub fn verifier(&self) -> NoteVerifier {
        NoteVerifier {
            name: self.name.clone(),
            key: self.key.verifying_key(),
            id: self.id,
        }
    }

    /// The signed note: `text` (which must end in a newline), a blank line, the signature line.
    pub fn sign(&self, text: &str) -> Result<String, NoteError> {
        if !text.ends_with('\n') || text.contains("\n\n") {
            return Err(NoteError::Malformed(
                "the text must end with one newline and have no blank lines",
            ));
        }
        let sig = self.key.sign(text.as_bytes());
        let mut blob = self.id.to_be_bytes().to_vec();
        blob.extend_from_slice(&sig.to_bytes());
        Ok(format!(
            "{text}\n{SIG_PREFIX}{} {}\n",
            self.name,
            B64.encode(blob)
        ))
    }
}

/// Checks notes signed by one named key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NoteVerifier {
    name: String,
    key: VerifyingKey,
    id: u32,
}

impl NoteVerifier {
    /// Parses `<name>+<hex key id>+<base64(0x01 ‖ public key)>`.
    pub fn parse(s: &str) -> Result<Self, NoteError> {
        let s = s.trim();
        let (name, rest) = s.split_once('+').ok_or(NoteError::BadKey)?;
        let (id_hex, key_b64) = rest.split_once('+').ok_or(NoteError::BadKey)?;
        if !name_ok(name) || id_hex.len() != 8 {
            return Err(NoteError::BadKey);
        }
        let id = u32::from_str_radix(id_hex, 16).map_err(|_| NoteError::BadKey)?;
        let raw = B64.decode(key_b64).map_err(|_| NoteError::BadKey)?;
        let (&alg, public) = raw.split_first().ok_or(NoteError::BadKey)?;
        let public: [u8; 32] = public.try_into().map_err(|_| NoteError::BadKey)?;
        if alg != ALG_ED25519 || key_id(name, &public) != id {
            return Err(NoteError::BadKey);
        }
        let key = VerifyingKey::from_bytes(&public).map_err(|_| NoteError::BadKey)?;
        Ok(Self {
            name: name.to_owned(),
            key,
            id,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn key_id(&self) -> u32 {
        self.id
    }

    /// The verifier key string.
    pub fn encode(&self) -> String {
        let mut raw = vec![ALG_ED25519];
        raw.extend_from_slice(self.key.as_bytes());
        format!("{}+{:08x}+{}", self.name, self.id, B64.encode(raw))
    }

    /// Returns the note's text if one of its signatures is ours and verifies.
    pub fn verify<'a>(&self, note: &'a SignedNote) -> Result<&'a str, NoteError> {
        let mut found = false;
        for (name, id, sig) in &note.sigs {
            if *name != self.name || *id != self.id {
                continue;
            }
            found = true;
            let sig = Signature::from_slice(sig)
                .map_err(|_| NoteError::BadSignature { name: name.clone() })?;
            self.key
                .verify_strict(note.text.as_bytes(), &sig)
                .map_err(|_| NoteError::BadSignature { name: name.clone() })?;
        }
        if found {
            Ok(&note.text)
        } else {
            Err(NoteError::NotSigned {
                name: self.name.clone(),
                id: self.id,
            })
        }
    }
}

/// A parsed (not yet verified) signed note.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedNote {
    pub text: String,
    /// `(name, key id, signature bytes)`.
    pub sigs: Vec<(String, u32, Vec<u8>)>,
}

impl SignedNote {
    pub fn parse(note: &str) -> Result<Self, NoteError> {
        if note.len() > MAX_NOTE_BYTES {
            return Err(NoteError::Malformed("it is too large"));
        }
        if note.contains('\r') || note.chars().any(|c| c.is_control() && c != '\n') {
            return Err(NoteError::Malformed("it contains control characters"));
        }
        let split = note.rfind("\n\n").ok_or(NoteError::Malformed(
            "there is no blank line before the signatures",
        ))?;
        let (text, sigs) = note.split_at(split + 1);
        let sigs = sigs
            .strip_prefix('\n')
            .ok_or(NoteError::Malformed("bad separator"))?;
        let sigs = sigs
            .strip_suffix('\n')
            .ok_or(NoteError::Malformed("it must end with a newline"))?;
        let mut out = Vec::new();
        for line in sigs.split('\n') {
            let rest = line.strip_prefix(SIG_PREFIX).ok_or(NoteError::Malformed(
                "a signature line must start with `— `",
            ))?;
            let (name, b64) = rest.split_once(' ').ok_or(NoteError::Malformed(
                "a signature line needs a name and a signature",
            ))?;
            if !name_ok(name) {
                return Err(NoteError::Malformed("a signature names an invalid key"));
            }
            let blob = B64
                .decode(b64)
                .map_err(|_| NoteError::Malformed("a signature is not base64"))?;
            if blob.len() < 5 {
                return Err(NoteError::Malformed("a signature is too short"));
            }
            let (id, sig) = blob
                .split_first_chunk::<4>()
                .ok_or(NoteError::Malformed("a signature is too short"))?;
            let id = u32::from_be_bytes(*id);
            out.push((name.to_owned(), id, sig.to_vec()));
        }
        if out.is_empty() {
            return Err(NoteError::Malformed("there are no signatures"));
        }
        Ok(Self {
            text: text.to_owned(),
            sigs: out,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_parse_verify_and_reject() {
        let s = NoteSigner::new("breakglass/test/1", &[5; 32]).unwrap();
        let note = s.sign("breakglass/test/1\n3\nAAAA\n").unwrap();
        let v = NoteVerifier::parse(&s.verifier().encode()).unwrap();
        let parsed = SignedNote::parse(&note).unwrap();
        assert_eq!(v.verify(&parsed).unwrap(), "breakglass/test/1\n3\nAAAA\n");
        let tampered = SignedNote::parse(&note.replacen("\n3\n", "\n4\n", 1)).unwrap();
        assert!(matches!(
            v.verify(&tampered),
            Err(NoteError::BadSignature { .. })
        ));
        let other = NoteSigner::new("breakglass/test/1", &[6; 32])
            .unwrap()
            .sign("breakglass/test/1\n3\nAAAA\n")
            .unwrap();
        assert!(matches!(
            v.verify(&SignedNote::parse(&other).unwrap()),
            Err(NoteError::NotSigned { .. })
        ));
        assert!(NoteSigner::new("has space", &[1; 32]).is_err());
        assert!(SignedNote::parse("no signatures\n").is_err());
    }
}
