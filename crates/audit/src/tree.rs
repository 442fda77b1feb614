//! The Merkle frontier: the roots of the perfect subtrees that make up a tree of `size` leaves,
//! largest first, one per set bit of `size`. Appending a leaf touches O(log n) hashes and yields
//! every newly completed subtree hash, which the store keeps so proofs never need a rebuild
//! (the same "stored hashes" idea as Go's `golang.org/x/mod/sumdb/tlog`).

use crate::hash::{EMPTY_ROOT, Hash, node_hash};
use crate::proof::NodeId;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    /// Largest (leftmost) subtree first.
    hashes: Vec<Hash>,
}

impl Frontier {
    pub fn new() -> Self {
        Self::default()
    }

    /// Rebuilds a frontier from its stored form; `None` if the hash count does not match `size`.
    pub fn from_parts(size: u64, hashes: Vec<Hash>) -> Option<Self> {
        (hashes.len() == size.count_ones() as usize).then_some(Self { size, hashes })
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn hashes(&self) -> &[Hash] {
        &self.hashes
    }

    /// Appends the leaf whose hash is `leaf` at index `size`; returns every subtree completed
    /// by it, starting with the leaf itself at level 0.
    pub fn append(&mut self, leaf: Hash) -> Vec<(NodeId, Hash)> {
        let mut index = self.size;
        let mut level = 0u8;
        let mut h = leaf;
        let mut completed = vec![(NodeId { level, index }, h)];
        while index & 1 == 1 {
            // INVARIANT: a set bit at `level` of the size means the frontier ends with the
            // left sibling at that level, so there is something to pop.
            let Some(left) = self.hashes.pop() else { break };
            h = node_hash(&left, &h);
            index >>= 1;
            level += 1;
            completed.push((NodeId { level, index }, h));
        }
        self.hashes.push(h);
        self.size += 1;
        completed
    }

    /// The RFC 6962 root hash of the tree.
    pub fn root(&self) -> Hash {
        let mut it = self.hashes.iter().rev();
        let Some(last) = it.next() else {
            return EMPTY_ROOT;
        };
        it.fold(*last, |acc, left| node_hash(left, &acc))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::leaf_hash;

    #[test]
    fn append_reports_completed_subtrees() {
        let mut f = Frontier::new();
        assert_eq!(f.root(), EMPTY_ROOT);
        let l: Vec<Hash> = (0..4u8).map(|i| leaf_hash(&[i])).collect();
        assert_eq!(f.append(l[0]).len(), 1);
        assert_eq!(f.root(), l[0]);
        let done = f.append(l[1]);
        assert_eq!(done.len(), 2);
        assert_eq!(
            done[1],
            (NodeId { level: 1, index: 0 }, node_hash(&l[0], &l[1]))
        );
        f.append(l[2]);
        assert_eq!(f.root(), node_hash(&node_hash(&l[0], &l[1]), &l[2]));
        let done = f.append(l[3]);
        assert_eq!(done.last().unwrap().0, NodeId { level: 2, index: 0 });
        assert_eq!(f.hashes().len(), 1);
        assert!(Frontier::from_parts(3, vec![l[0]]).is_none());
    }
}
