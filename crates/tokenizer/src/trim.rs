//! Vocabulary trimming: a model that keeps only the tokens a corpus uses (embedding tables
//! dominate a small model's size) reads and writes its own compact ids, and the tokenizer maps
//! them to and from the full vocabulary's. The BPE itself is untouched, so segmentation is the
//! same; a piece the trimmed vocabulary lacks becomes `<unk>`.

use std::collections::{BTreeSet, HashMap};

use crate::{SPECIAL_TOKENS, UNK_ID};

/// The full-vocabulary ids a trimmed tokenizer keeps: compact id `i` is full id `kept[i]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Trim {
    kept: Vec<u32>,
    compact: HashMap<u32, u32>,
}

impl Trim {
    /// Keeps `ids` (full-vocabulary ids) and always the specials, in full-id order, so the
    /// specials keep XLM's ids 0–13.
    pub(crate) fn new(ids: impl IntoIterator<Item = u32>) -> Self {
        let mut set: BTreeSet<u32> = ids.into_iter().collect();
        set.extend(0..SPECIAL_TOKENS.len() as u32);
        let kept: Vec<u32> = set.into_iter().collect();
        let compact = kept.iter().enumerate().map(|(i, &id)| (id, i as u32)).collect();
        Self { kept, compact }
    }

    pub(crate) fn kept(&self) -> &[u32] {
        &self.kept
    }

    pub(crate) fn len(&self) -> usize {
        self.kept.len()
    }

    /// Full id → compact id; a dropped token is `<unk>`.
    pub(crate) fn to_compact(&self, full: u32) -> u32 {
        self.compact.get(&full).copied().unwrap_or(UNK_ID)
    }

    /// Compact id → full id; an id past the end is `<unk>`.
    pub(crate) fn to_full(&self, compact: u32) -> u32 {
        self.kept.get(compact as usize).copied().unwrap_or(UNK_ID)
    }

    pub(crate) fn to_compact_ids(&self, ids: &mut [u32]) {
        ids.iter_mut().for_each(|id| *id = self.to_compact(*id));
    }

    pub(crate) fn to_full_ids(&self, ids: &[u32]) -> Vec<u32> {
        ids.iter().map(|&id| self.to_full(id)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specials_keep_their_ids_and_other_ids_are_compacted_in_order() {
        let trim = Trim::new([40, 20, 20, 100]);
        assert_eq!(trim.len(), 17);
        assert_eq!(&trim.kept()[..14], (0..14).collect::<Vec<_>>().as_slice());
        assert_eq!(&trim.kept()[14..], &[20, 40, 100]);
        assert_eq!([1, 20, 40, 100].map(|id| trim.to_compact(id)), [1, 14, 15, 16]);
        assert_eq!(trim.to_compact(21), UNK_ID, "a dropped token reads as <unk>");
        assert_eq!(trim.to_full_ids(&[14, 15, 16, 2, 99]), vec![20, 40, 100, 2, UNK_ID]);
    }
}
