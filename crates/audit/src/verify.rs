//! The offline verifier. It trusts nothing it is given: it re-hashes every stored event's bytes
//! in sequence order, rebuilds the tree, and holds every checkpoint (stored, published, or kept by
//! the auditor) against the tree it rebuilt. Any disagreement is a [`Problem`] naming the first
//! sequence number it can pin down.

use std::collections::BTreeMap;

use crate::checkpoint::Checkpoint;
use crate::hash::{Hash, leaf_hash};
use crate::note::{NoteVerifier, SignedNote};
use crate::tree::Frontier;

/// Only the `seq` of an event, read without building the whole JSON value.
#[derive(serde::Deserialize)]
struct SeqOnly {
    seq: Option<u64>,
}

/// The checkpoint size a found note claims, if it parses (to [`Rebuild::want`] its root).
pub fn claimed_size(found: &FoundCheckpoint) -> Option<u64> {
    let note = SignedNote::parse(&found.note).ok()?;
    Checkpoint::parse(&note.text).ok().map(|c| c.size)
}

/// One thing wrong with the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The first sequence number the problem affects, when it can be named.
    pub seq: Option<u64>,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.seq {
            Some(s) => write!(f, "seq {s}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// Rebuilds the tree from events fed in storage order, keeping the root at every size a
/// checkpoint names (ask with [`Rebuild::want`] before feeding events).
#[derive(Debug)]
pub struct Rebuild {
    frontier: Frontier,
    roots: BTreeMap<u64, Option<Hash>>,
    problems: Vec<Problem>,
    last_row: Option<u64>,
}

impl Default for Rebuild {
    fn default() -> Self {
        Self::new()
    }
}

impl Rebuild {
    pub fn new() -> Self {
        Self {
            frontier: Frontier::new(),
            roots: BTreeMap::new(),
            problems: Vec::new(),
            last_row: None,
        }
    }

    /// Keep the root at `size` (must be called before the events up to `size` are fed).
    pub fn want(&mut self, size: u64) {
        self.roots.entry(size).or_insert(None);
        if size == self.frontier.size() {
            self.remember();
        }
    }

    fn remember(&mut self) {
        if let Some(slot) = self.roots.get_mut(&self.frontier.size()) {
            *slot = Some(self.frontier.root());
        }
    }

    // INVARIANT(4): the verifier re-hashes the stored bytes themselves; it never trusts a stored
    // hash or re-serialises an event.
    /// The next stored event: its row's `seq`, its bytes, and the leaf hash the store recorded
    /// when it was appended (if it kept one).
    pub fn event(&mut self, row_seq: u64, bytes: &[u8], recorded_leaf: Option<Hash>) {
        // Compare with the previous row, so one gap is reported once, at the seq that is missing.
        let expected = self.last_row.map_or(0, |l| l.saturating_add(1));
        if row_seq != expected {
            let message = if row_seq > expected {
                let missing = row_seq - expected;
                format!(
                    "is missing: the log jumps to seq {row_seq} ({missing} event{} deleted)",
                    if missing == 1 { " was" } else { "s were" }
                )
            } else {
                format!(
                    "appears after seq {} (events were duplicated or reordered)",
                    expected.saturating_sub(1)
                )
            };
            self.problems.push(Problem {
                seq: Some(expected.min(row_seq)),
                message,
            });
        }
        self.last_row = Some(row_seq);
        match serde_json::from_slice::<SeqOnly>(bytes)
            .ok()
            .and_then(|v| v.seq)
        {
            Some(s) if s == row_seq => {}
            Some(s) => self.problems.push(Problem {
                seq: Some(row_seq),
                message: format!("its bytes say seq {s} (events were reordered or moved)"),
            }),
            None => self.problems.push(Problem {
                seq: Some(row_seq),
                message: "its bytes are not an audit event with a `seq` (the event was edited)"
                    .into(),
            }),
        }
        let leaf = leaf_hash(bytes);
        if let Some(recorded) = recorded_leaf
            && recorded != leaf
        {
            self.problems.push(Problem {
                    seq: Some(row_seq),
                    message: "its bytes do not hash to the leaf hash recorded when it was written (the event was edited)".into(),
                });
        }
        self.frontier.append(leaf);
        self.remember();
    }

    pub fn finish(self) -> Rebuilt {
        Rebuilt {
            size: self.frontier.size(),
            root: self.frontier.root(),
            roots: self
                .roots
                .into_iter()
                .filter_map(|(s, r)| r.map(|r| (s, r)))
                .collect(),
            problems: self.problems,
        }
    }
}

/// The tree rebuilt from the stored bytes.
#[derive(Debug, Clone)]
pub struct Rebuilt {
    pub size: u64,
    pub root: Hash,
    /// The root of the first `n` events, for each wanted `n` the log reached.
    pub roots: BTreeMap<u64, Hash>,
    pub problems: Vec<Problem>,
}

/// A checkpoint as found somewhere, before it is trusted.
#[derive(Clone, Debug)]
pub struct FoundCheckpoint {
    /// Where it was found, for messages (`the database, checkpoint 3`, `checkpoints.log line 7`).
    pub source: String,
    pub note: String,
}

/// The outcome of checking one checkpoint against the rebuilt tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CheckpointOutcome {
    Good(Checkpoint),
    Bad(Problem),
}

/// Checks one checkpoint: signed by `key`, for `origin`, and matching the rebuilt tree.
pub fn check_checkpoint(
    found: &FoundCheckpoint,
    key: &NoteVerifier,
    origin: &str,
    rebuilt: &Rebuilt,
    last_good: u64,
) -> CheckpointOutcome {
    let bad = |seq: Option<u64>, message: String| {
        CheckpointOutcome::Bad(Problem {
            seq,
            message: format!("{}: {message}", found.source),
        })
    };
    let note = match SignedNote::parse(&found.note) {
        Ok(n) => n,
        Err(e) => return bad(None, e.to_string()),
    };
    let text = match key.verify(&note) {
        Ok(t) => t,
        Err(e) => return bad(None, format!("{e} (expected key `{}`)", key.encode())),
    };
    let cp = match Checkpoint::parse(text) {
        Ok(c) => c,
        Err(e) => return bad(None, e.to_string()),
    };
    if cp.origin != origin {
        return bad(
            None,
            format!("checkpoint is for log `{}`, not `{origin}`", cp.origin),
        );
    }
    if cp.size > rebuilt.size {
        return bad(
            Some(rebuilt.size),
            format!(
                "checkpoint commits to {} events but the log has {}: events from seq {} on were deleted",
                cp.size, rebuilt.size, rebuilt.size
            ),
        );
    }
    match rebuilt.roots.get(&cp.size) {
        Some(root) if *root == cp.root => CheckpointOutcome::Good(cp),
        Some(root) => bad(
            Some(last_good.min(cp.size.saturating_sub(1))),
            format!(
                "the first {} events hash to {root}, not to the signed root {}: an event between seq {} and seq {} was changed",
                cp.size,
                cp.root,
                last_good.min(cp.size.saturating_sub(1)),
                cp.size.saturating_sub(1)
            ),
        ),
        None => bad(None, format!("no root was computed for size {}", cp.size)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::note::NoteSigner;

    fn event(seq: u64) -> Vec<u8> {
        format!(r#"{{"seq":{seq},"type":"x","v":1}}"#).into_bytes()
    }

    fn signed(signer: &NoteSigner, size: u64, root: Hash) -> FoundCheckpoint {
        let cp = Checkpoint {
            origin: "o".into(),
            size,
            root,
        };
        FoundCheckpoint {
            source: format!("cp{size}"),
            note: signer.sign(&cp.to_text()).unwrap(),
        }
    }

    #[test]
    fn an_untouched_log_verifies_and_each_kind_of_damage_is_named() {
        let signer = NoteSigner::new("o", &[9; 32]).unwrap();
        let key = signer.verifier();
        let events: Vec<Vec<u8>> = (0..10).map(event).collect();
        let mut f = Frontier::new();
        let mut roots = BTreeMap::new();
        for e in &events {
            f.append(leaf_hash(e));
            roots.insert(f.size(), f.root());
        }
        let cps = [
            signed(&signer, 4, roots[&4]),
            signed(&signer, 10, roots[&10]),
        ];
        let run = |evs: &[(u64, Vec<u8>)]| {
            let mut r = Rebuild::new();
            for c in &cps {
                r.want(claimed_size(c).unwrap());
            }
            for (s, b) in evs {
                r.event(*s, b, Some(leaf_hash(&event(*s))));
            }
            let rebuilt = r.finish();
            let outcomes: Vec<_> = cps
                .iter()
                .map(|c| check_checkpoint(c, &key, "o", &rebuilt, 0))
                .collect();
            (rebuilt, outcomes)
        };
        let good: Vec<(u64, Vec<u8>)> = events
            .iter()
            .cloned()
            .enumerate()
            .map(|(i, b)| (i as u64, b))
            .collect();
        let (rebuilt, outcomes) = run(&good);
        assert!(rebuilt.problems.is_empty());
        assert!(
            outcomes
                .iter()
                .all(|o| matches!(o, CheckpointOutcome::Good(_)))
        );

        let mut edited = good.clone();
        edited[5].1[2] = b'S';
        let (rebuilt, outcomes) = run(&edited);
        assert_eq!(rebuilt.problems[0].seq, Some(5));
        assert!(
            matches!(&outcomes[1], CheckpointOutcome::Bad(p) if p.message.contains("was changed"))
        );

        let mut deleted = good.clone();
        deleted.remove(5);
        let (rebuilt, _) = run(&deleted);
        assert_eq!(
            rebuilt.problems.len(),
            1,
            "one gap, one problem: {:?}",
            rebuilt.problems
        );
        assert_eq!(rebuilt.problems[0].seq, Some(5));
        assert!(rebuilt.problems[0].message.contains("is missing"));

        let mut swapped = good.clone();
        let (a, b) = (swapped[3].1.clone(), swapped[4].1.clone());
        swapped[3].1 = b;
        swapped[4].1 = a;
        let (rebuilt, _) = run(&swapped);
        assert_eq!(rebuilt.problems[0].seq, Some(3));
        assert!(rebuilt.problems[0].message.contains("reordered"));

        let (rebuilt, outcomes) = run(&good[..7]);
        assert!(rebuilt.problems.is_empty());
        assert!(
            matches!(&outcomes[1], CheckpointOutcome::Bad(p) if p.seq == Some(7) && p.message.contains("were deleted"))
        );

        let other = NoteSigner::new("o", &[8; 32]).unwrap();
        let forged = signed(&other, 10, roots[&10]);
        let (rebuilt, _) = run(&good);
        assert!(
            matches!(check_checkpoint(&forged, &key, "o", &rebuilt, 0), CheckpointOutcome::Bad(p) if p.message.contains("not signed by"))
        );
    }
}
