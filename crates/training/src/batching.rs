//! Token-based batching: pairs of similar lengths share a batch, each batch holds at most
//! `max_tokens` padded tokens on its longer side, and the batch order is shuffled per epoch by a
//! seed, so (epoch, index) names the same batch on every run — which is what exact resume needs.

/// Indices into the training pairs, one `Vec` per batch.
pub type Batch = Vec<usize>;

/// A small deterministic generator (SplitMix64) for shuffling.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i + 1);
            items.swap(i, j);
        }
    }
}

/// Groups pairs (source length, target length) into batches of at most `max_tokens` padded
/// tokens; a pair longer than `max_tokens` gets a batch of its own.
pub fn batches(lengths: &[(usize, usize)], max_tokens: usize, epoch_seed: u64) -> Vec<Batch> {
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    // Shuffle first so equal lengths are not always batched together, then sort (stable) by length.
    Rng::new(epoch_seed).shuffle(&mut order);
    order.sort_by_key(|&i| (lengths[i].0.max(lengths[i].1), lengths[i].0));
    let mut out: Vec<Batch> = Vec::new();
    let mut current: Batch = Vec::new();
    let mut longest = 0;
    for i in order {
        let len = lengths[i].0.max(lengths[i].1) + 2; // </s> on both ends
        let longest_with = longest.max(len);
        if !current.is_empty() && longest_with * (current.len() + 1) > max_tokens {
            out.push(std::mem::take(&mut current));
            longest = 0;
        }
        longest = longest.max(len);
        current.push(i);
    }
    if !current.is_empty() {
        out.push(current);
    }
    Rng::new(epoch_seed ^ 0xA5A5_A5A5).shuffle(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_respect_the_token_budget_and_cover_every_pair_once() {
        let lengths: Vec<(usize, usize)> = (0..500).map(|i| (1 + i % 37, 1 + (i * 7) % 41)).collect();
        let batches = batches(&lengths, 200, 3);
        let mut seen: Vec<usize> = batches.iter().flatten().copied().collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..500).collect::<Vec<_>>());
        for batch in &batches {
            let longest = batch.iter().map(|&i| lengths[i].0.max(lengths[i].1) + 2).max().unwrap();
            assert!(batch.len() == 1 || longest * batch.len() <= 200);
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_batches() {
        let lengths: Vec<(usize, usize)> = (0..100).map(|i| (i % 9 + 1, i % 5 + 1)).collect();
        assert_eq!(batches(&lengths, 64, 9), batches(&lengths, 64, 9));
        assert_ne!(batches(&lengths, 64, 9), batches(&lengths, 64, 10));
    }
}
