//! Bounded samples of unbounded streams: what keeps `logs` memory flat in the number of events.
//!
//! [`Reservoir`] is Vitter's algorithm R: after `n` offers it holds a uniform random sample of
//! `min(n, capacity)` of them, and while `n <= capacity` it holds all of them in arrival order,
//! so small logs are analysed exactly. The generator is a fixed-seed SplitMix64 (a few lines,
//! hand-rolled rather than the `rand` crate) so that the same log always gives the same report.

/// A uniform sample of at most `capacity` items.
#[derive(Debug, Clone)]
pub struct Reservoir<T> {
    items: Vec<T>,
    capacity: usize,
    seen: u64,
    rng: u64,
}

impl<T> Reservoir<T> {
    /// An empty reservoir holding at most `capacity` (at least 1) items.
    pub fn new(capacity: usize) -> Reservoir<T> {
        Reservoir {
            items: Vec::new(),
            capacity: capacity.max(1),
            seen: 0,
            rng: 0x9E37_79B9_7F4A_7C15,
        }
    }

    fn next_u64(&mut self) -> u64 {
        // SplitMix64.
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Offer one item.
    pub(crate) fn offer(&mut self, item: T) {
        self.seen += 1;
        if self.items.len() < self.capacity {
            self.items.push(item);
            return;
        }
        let j = self.next_u64() % self.seen;
        if let Some(slot) = usize::try_from(j).ok().and_then(|j| self.items.get_mut(j)) {
            *slot = item;
        }
    }

    /// The last item offered, while every item is kept.
    pub(crate) fn last_mut(&mut self) -> Option<&mut T> {
        if self.exact() {
            self.items.last_mut()
        } else {
            None
        }
    }

    /// Items offered so far.
    pub fn seen(&self) -> u64 {
        self.seen
    }

    /// True while every offered item is kept.
    pub fn exact(&self) -> bool {
        self.seen <= self.capacity as u64
    }

    /// The sample (arrival order while [`Reservoir::exact`]).
    pub fn items(&self) -> &[T] {
        &self.items
    }

    /// The sample, consumed.
    pub(crate) fn into_items(self) -> Vec<T> {
        self.items
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_all_then_samples_uniformly() {
        let mut r = Reservoir::new(100);
        for i in 0..100u32 {
            r.offer(i);
        }
        assert!(r.exact());
        assert_eq!(r.items(), (0..100).collect::<Vec<_>>().as_slice());
        for i in 100..100_000u32 {
            r.offer(i);
        }
        assert!(!r.exact());
        assert_eq!((r.items().len(), r.seen()), (100, 100_000));
        // A uniform sample of 0..100000 has its mean near 50000.
        let mean = r.items().iter().map(|&x| f64::from(x)).sum::<f64>() / 100.0;
        assert!((mean - 50_000.0).abs() < 10_000.0, "{mean}");
    }
}
