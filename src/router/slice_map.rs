//! [`SliceMap`]: a small build-once, read-many hash map keyed by byte strings.
//!
//! Owns the router's only hashing. Used for exact hosts and suffixes (`FOLD = true`: keys are hashed
//! and compared ASCII case-insensitively, so a `Host` value never needs lower-casing into a buffer),
//! exact paths and prefixes, and template-trie children (`FOLD = false`).
//!
//! Layout: open addressing with linear probing over `slots` (entry index + 1, 0 = empty), load <= 1/2,
//! slot chosen by the top bits of a multiplicative word-at-a-time hash. Each entry keeps its full
//! 64-bit hash, so a probe only compares key bytes when the hashes are equal: a miss costs one hash
//! and usually one or two slot reads, never a `memcmp`.
//!
//! Not DoS-resistant, and needs not be: keys come from the config; clients can only probe.

const K: u64 = 0xf135_7aea_2e62_a9c5;
const ONES: u64 = 0x0101_0101_0101_0101;
const HIGH: u64 = 0x8080_8080_8080_8080;

/// ASCII-lower-cases the 8 bytes of `w` at once (non-ASCII bytes untouched).
#[inline]
fn fold_word(w: u64) -> u64 {
    let low7 = w & !HIGH;
    let ge_a = low7 + ONES * (0x80 - u64::from(b'A'));
    let gt_z = low7 + ONES * (0x7f - u64::from(b'Z'));
    let upper = (ge_a ^ gt_z) & !w & HIGH;
    w | (upper >> 2)
}

#[inline]
fn word_at(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(w)
}

/// The bytes of `b` after its last whole 8-byte word, as one word, without a byte-wise copy: the
/// last 8 bytes (overlapping the previous word) when `b` is at least 8 long, else up to two small
/// loads. Only called when `b.len() % 8 != 0`; equal inputs give equal words.
#[inline]
fn tail_word(b: &[u8]) -> u64 {
    let n = b.len();
    if n >= 8 {
        word_at(b, n - 8)
    } else if n >= 4 {
        let lo = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        let hi = u32::from_le_bytes([b[n - 4], b[n - 3], b[n - 2], b[n - 1]]);
        u64::from(lo) | (u64::from(hi) << 32)
    } else {
        u64::from(b[0]) | (u64::from(b[n / 2]) << 8) | (u64::from(b[n - 1]) << 16)
    }
}

#[inline]
fn hash<const FOLD: bool>(key: &[u8]) -> u64 {
    let mut h = (key.len() as u64).wrapping_mul(K);
    let mut mix = |w: u64| {
        let w = if FOLD { fold_word(w) } else { w };
        h = (h.rotate_left(5) ^ w).wrapping_mul(K);
    };
    let whole = key.len() / 8;
    for i in 0..whole {
        mix(word_at(key, i * 8));
    }
    if key.len() % 8 != 0 {
        mix(tail_word(key));
    }
    h
}

/// Key equality, word at a time (`FOLD`: ASCII case-insensitive).
#[inline]
fn keys_eq<const FOLD: bool>(a: &[u8], b: &[u8]) -> bool {
    let f = |w: u64| if FOLD { fold_word(w) } else { w };
    if a.len() != b.len() {
        return false;
    }
    for i in 0..a.len() / 8 {
        if f(word_at(a, i * 8)) != f(word_at(b, i * 8)) {
            return false;
        }
    }
    a.len() % 8 == 0 || f(tail_word(a)) == f(tail_word(b))
}

#[derive(Debug)]
struct Entry<V> {
    hash: u64,
    key: Box<[u8]>,
    val: V,
}

/// Byte-string keyed map; `FOLD` = ASCII case-insensitive keys.
#[derive(Debug)]
pub(crate) struct SliceMap<V, const FOLD: bool> {
    /// Entry index + 1; 0 = empty. Length is 0 or a power of two.
    slots: Box<[u32]>,
    /// `64 - log2(slots.len())`.
    shift: u32,
    entries: Vec<Entry<V>>,
}

impl<V, const FOLD: bool> Default for SliceMap<V, FOLD> {
    fn default() -> Self {
        SliceMap {
            slots: Box::default(),
            shift: 64,
            entries: Vec::new(),
        }
    }
}

impl<V, const FOLD: bool> SliceMap<V, FOLD> {
    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    #[inline]
    fn find(&self, key: &[u8], h: u64) -> Result<usize, usize> {
        let mask = self.slots.len() - 1;
        let mut i = (h >> self.shift) as usize;
        loop {
            let s = self.slots[i];
            if s == 0 {
                return Err(i);
            }
            let e = &self.entries[s as usize - 1];
            if e.hash == h && keys_eq::<FOLD>(&e.key, key) {
                return Ok(s as usize - 1);
            }
            i = (i + 1) & mask;
        }
    }

    #[inline]
    pub(crate) fn get(&self, key: &[u8]) -> Option<&V> {
        if self.entries.is_empty() {
            return None;
        }
        let i = self.find(key, hash::<FOLD>(key)).ok()?;
        Some(&self.entries[i].val)
    }

    /// The value for `key`, inserting `make()` first if absent. Build time only.
    pub(crate) fn get_or_insert_with(&mut self, key: &[u8], make: impl FnOnce() -> V) -> &mut V {
        if (self.entries.len() + 1) * 2 > self.slots.len() {
            self.grow();
        }
        let h = hash::<FOLD>(key);
        let i = match self.find(key, h) {
            Ok(i) => i,
            Err(slot) => {
                let key = if FOLD {
                    key.to_ascii_lowercase().into()
                } else {
                    key.into()
                };
                self.entries.push(Entry {
                    hash: h,
                    key,
                    val: make(),
                });
                self.slots[slot] = u32::try_from(self.entries.len()).expect("too many keys");
                self.entries.len() - 1
            }
        };
        &mut self.entries[i].val
    }

    fn grow(&mut self) {
        let n = (self.slots.len() * 2).max(8);
        self.slots = vec![0; n].into();
        self.shift = 64 - n.trailing_zeros();
        for (idx, e) in self.entries.iter().enumerate() {
            let mut i = (e.hash >> self.shift) as usize;
            while self.slots[i] != 0 {
                i = (i + 1) & (n - 1);
            }
            self.slots[i] = idx as u32 + 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fold_word_lowercases_only_ascii_letters() {
        let all: Vec<u8> = (0..=255).collect();
        for c in all.chunks(8) {
            let w = u64::from_le_bytes(c.try_into().unwrap());
            let got = fold_word(w).to_le_bytes();
            let want: Vec<u8> = c.iter().map(u8::to_ascii_lowercase).collect();
            assert_eq!(&got[..], &want[..]);
        }
    }

    #[test]
    fn keys_eq_every_length() {
        for n in 0..40usize {
            let a: Vec<u8> = (0..n as u8).map(|i| b'a' + i % 26).collect();
            let upper = a.to_ascii_uppercase();
            assert!(keys_eq::<false>(&a, &a) && keys_eq::<true>(&a, &upper));
            assert_eq!(keys_eq::<false>(&a, &upper), n == 0);
            assert_eq!(hash::<true>(&a), hash::<true>(&upper));
            for i in 0..n {
                let mut b = a.clone();
                b[i] = b'#';
                assert!(
                    !keys_eq::<false>(&a, &b) && !keys_eq::<true>(&a, &b),
                    "len {n} at {i}"
                );
            }
        }
    }

    #[test]
    fn get_and_insert() {
        let mut m: SliceMap<usize, true> = SliceMap::default();
        assert_eq!(m.get(b"x"), None);
        for i in 0..1000 {
            *m.get_or_insert_with(format!("Host{i}.Example.COM").as_bytes(), || 0) += i;
        }
        for i in 0..1000 {
            assert_eq!(m.get(format!("host{i}.example.com").as_bytes()), Some(&i));
            assert_eq!(m.get(format!("HOST{i}.EXAMPLE.COM").as_bytes()), Some(&i));
        }
        assert_eq!(m.get(b"host1000.example.com"), None);
        assert_eq!(m.get(b"host1.example.co"), None);
        let mut p: SliceMap<u8, false> = SliceMap::default();
        *p.get_or_insert_with(b"/A", || 1) += 1;
        *p.get_or_insert_with(b"", || 7) += 1;
        assert_eq!(
            (p.get(b"/A"), p.get(b"/a"), p.get(b"")),
            (Some(&2), None, Some(&8))
        );
    }
}
