//! Deterministic document-level splits, then de-duplication and leak removal.
//!
//! Every pair of a document lands in the same split, so no test document is seen in training.
//! Because the same sentence can occur in several documents (help pages repeat boilerplate),
//! a train pair whose source sentence also occurs in dev or test is dropped too, and likewise a
//! dev pair whose source occurs in test.

use std::collections::HashSet;

use sha2::{Digest, Sha256};

use crate::Pair;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    Train,
    Dev,
    Test,
}

impl Split {
    pub const ALL: [Split; 3] = [Split::Train, Split::Dev, Split::Test];

    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Dev => "dev",
            Split::Test => "test",
        }
    }
}

/// Bible books held out, by number (Ruth, Esther, Jonah, Micah, Colossians, 1 Thessalonians,
/// James for test; Joel, Habakkuk, Philippians, 2 Peter, Jude for dev): whole books, spread over
/// both testaments and genres.
const BIBLE_TEST_BOOKS: [u32; 7] = [8, 17, 32, 33, 51, 52, 59];
const BIBLE_DEV_BOOKS: [u32; 5] = [29, 35, 50, 61, 65];
/// Share of other documents (help pages, user segments) held out, in percent.
pub const HELD_OUT_PERCENT: u64 = 3;

/// Which split a document belongs to; documents `bible:<book>` follow the book lists, any other
/// document its hash (the same on every machine and run).
pub fn assign(document: &str, held_out_percent: u64) -> Split {
    if let Some(book) = document.strip_prefix("bible:").and_then(|b| b.parse::<u32>().ok()) {
        return if BIBLE_TEST_BOOKS.contains(&book) {
            Split::Test
        } else if BIBLE_DEV_BOOKS.contains(&book) {
            Split::Dev
        } else {
            Split::Train
        };
    }
    let digest = Sha256::digest(document.as_bytes());
    let bucket = u64::from_le_bytes(digest[..8].try_into().expect("8 bytes")) % 100;
    if bucket < held_out_percent {
        Split::Test
    } else if bucket < 2 * held_out_percent {
        Split::Dev
    } else {
        Split::Train
    }
}

/// The three splits and what cleaning removed.
#[derive(Debug, Default)]
pub struct Splits {
    pub train: Vec<Pair>,
    pub dev: Vec<Pair>,
    pub test: Vec<Pair>,
    pub duplicates: usize,
    pub leaks: usize,
}

impl Splits {
    pub fn get(&self, split: Split) -> &[Pair] {
        match split {
            Split::Train => &self.train,
            Split::Dev => &self.dev,
            Split::Test => &self.test,
        }
    }
}

/// Splits `pairs` by document, drops exact duplicate pairs within a split and cross-split leaks.
pub fn split(pairs: Vec<Pair>, held_out_percent: u64) -> Splits {
    let mut splits = Splits::default();
    let mut seen: HashSet<(String, String)> = HashSet::new();
    for pair in pairs {
        let which = assign(&pair.document, held_out_percent);
        if !seen.insert((format!("{}:{}", which.name(), pair.source), pair.target.clone())) {
            splits.duplicates += 1;
            continue;
        }
        match which {
            Split::Train => splits.train.push(pair),
            Split::Dev => splits.dev.push(pair),
            Split::Test => splits.test.push(pair),
        }
    }
    let test_sources: HashSet<String> = splits.test.iter().map(|p| p.source.clone()).collect();
    let before = splits.dev.len();
    splits.dev.retain(|p| !test_sources.contains(&p.source));
    splits.leaks += before - splits.dev.len();
    let held_out: HashSet<&String> = test_sources.iter().chain(splits.dev.iter().map(|p| &p.source)).collect();
    let before = splits.train.len();
    splits.train.retain(|p| !held_out.contains(&p.source));
    splits.leaks += before - splits.train.len();
    splits
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(source: &str, document: &str) -> Pair {
        Pair { source: source.into(), target: format!("{source}-fr"), document: document.into() }
    }

    #[test]
    fn bible_books_follow_the_lists() {
        assert_eq!(assign("bible:8", 3), Split::Test);
        assert_eq!(assign("bible:50", 3), Split::Dev);
        assert_eq!(assign("bible:1", 3), Split::Train);
    }

    #[test]
    fn hashed_assignment_is_stable_and_roughly_proportional() {
        let held: usize = (0..10_000).filter(|i| assign(&format!("help:{i}.html"), 3) != Split::Train).count();
        assert!((450..750).contains(&held), "{held} of 10000 held out");
        assert_eq!(assign("help:text/a.html", 3), assign("help:text/a.html", 3));
    }

    #[test]
    fn duplicates_and_leaks_are_removed() {
        let pairs = vec![
            pair("Ruth speaks", "bible:8"),
            pair("Ruth speaks", "bible:1"), // same sentence as a test pair: a leak
            pair("Genesis", "bible:1"),
            pair("Genesis", "bible:1"), // exact duplicate
            pair("Joel", "bible:29"),
        ];
        let s = split(pairs, 3);
        assert_eq!(s.test.len(), 1);
        assert_eq!(s.dev.len(), 1);
        assert_eq!(s.train.iter().map(|p| p.source.as_str()).collect::<Vec<_>>(), ["Genesis"]);
        assert_eq!((s.duplicates, s.leaks), (1, 1));
    }
}
