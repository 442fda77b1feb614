//! C2SP `tlog-checkpoint`: `<origin>\n<size>\n<base64 root>\n`, then optional extension lines.

use crate::hash::Hash;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    #[error("checkpoint is malformed: {0}")]
    Malformed(&'static str),
}

impl Checkpoint {
    /// The note text that gets signed.
    pub fn to_text(&self) -> String {
        format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            self.root.to_base64()
        )
    }

    /// Parses a checkpoint body (the note's text). Extension lines are allowed and ignored.
    pub fn parse(text: &str) -> Result<Self, CheckpointError> {
        let body = text
            .strip_suffix('\n')
            .ok_or(CheckpointError::Malformed("it must end with a newline"))?;
        let mut lines = body.split('\n');
        let origin = lines
            .next()
            .filter(|o| !o.is_empty())
            .ok_or(CheckpointError::Malformed("the origin line is empty"))?;
        let size = lines
            .next()
            .ok_or(CheckpointError::Malformed("the size line is missing"))?;
        if size.is_empty()
            || !size.bytes().all(|b| b.is_ascii_digit())
            || (size.len() > 1 && size.starts_with('0'))
        {
            return Err(CheckpointError::Malformed(
                "the size is not a decimal number",
            ));
        }
        let size: u64 = size
            .parse()
            .map_err(|_| CheckpointError::Malformed("the size is out of range"))?;
        let root = lines
            .next()
            .and_then(Hash::from_base64)
            .ok_or(CheckpointError::Malformed(
                "the root hash line is not base64 of 32 bytes",
            ))?;
        if lines.any(str::is_empty) {
            return Err(CheckpointError::Malformed("an extension line is empty"));
        }
        Ok(Self {
            origin: origin.to_owned(),
            size,
            root,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::leaf_hash;

    #[test]
    fn round_trips_and_refuses_garbage() {
        let c = Checkpoint {
            origin: "breakglass/h/1".into(),
            size: 17,
            root: leaf_hash(b"a"),
        };
        assert_eq!(Checkpoint::parse(&c.to_text()), Ok(c.clone()));
        let with_ext = format!("{}ext\n", c.to_text());
        assert_eq!(Checkpoint::parse(&with_ext), Ok(c));
        for bad in [
            "",
            "o\n1\n",
            "o\n01\nAAAA\n",
            "o\nx\nAAAA\n",
            "\n1\nAAAA\n",
            "o\n1\nAAAA",
        ] {
            assert!(Checkpoint::parse(bad).is_err(), "{bad:?}");
        }
    }
}
