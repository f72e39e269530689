//! Completion indexes of Indexed Jobs as ordered intervals, the compact form
//! upstream keeps in `status.completedIndexes` / `status.failedIndexes`
//! ("1,3-5,7").

use std::collections::BTreeSet;
use std::fmt;

/// An inclusive interval of indexes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Interval {
    pub first: i64,
    pub last: i64,
}

/// Non-overlapping, non-adjacent intervals in increasing order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Intervals(pub Vec<Interval>);

impl Intervals {
    /// Parse "1,3-5" keeping only indexes below `completions`; corrupted
    /// pieces are skipped, as upstream does.
    pub fn parse(s: &str, completions: i64) -> Intervals {
        let mut out: Vec<Interval> = Vec::new();
        if s.is_empty() {
            return Intervals(out);
        }
        for piece in s.split(',') {
            let mut limits = piece.splitn(2, '-');
            let Some(first) = limits.next().and_then(|f| f.parse::<i64>().ok()) else {
                continue;
            };
            if first >= completions {
                break;
            }
            let last = match limits.next() {
                Some(l) => match l.parse::<i64>() {
                    Ok(l) => l.min(completions - 1),
                    Err(_) => continue,
                },
                None => first,
            };
            match out.last_mut() {
                Some(prev) if prev.last == first - 1 => prev.last = last,
                _ => out.push(Interval { first, last }),
            }
        }
        Intervals(out)
    }

    /// These intervals merged with `other`.
    pub fn merge(&self, other: &Intervals) -> Intervals {
        let mut result: Vec<Interval> = Vec::new();
        let mut push = |iv: Interval| match result.last_mut() {
            Some(last) if iv.first <= last.last + 1 => last.last = last.last.max(iv.last),
            _ => result.push(iv),
        };
        let (a, b) = (&self.0, &other.0);
        let (mut i, mut j) = (0, 0);
        while i < a.len() && j < b.len() {
            if a[i].first < b[j].first {
                push(a[i]);
                i += 1;
            } else {
                push(b[j]);
                j += 1;
            }
        }
        a[i..].iter().chain(&b[j..]).for_each(|iv| push(*iv));
        Intervals(result)
    }

    /// These intervals with the given indexes added.
    pub fn with_indexes(&self, indexes: impl IntoIterator<Item = i64>) -> Intervals {
        let set: BTreeSet<i64> = indexes.into_iter().collect();
        self.merge(&Intervals(
            set.into_iter()
                .map(|i| Interval { first: i, last: i })
                .collect(),
        ))
    }

    /// How many indexes the intervals hold.
    pub fn total(&self) -> i64 {
        self.0.iter().map(|iv| iv.last - iv.first + 1).sum()
    }

    pub fn has(&self, ix: i64) -> bool {
        let pos = self.0.partition_point(|iv| iv.last < ix);
        self.0.get(pos).is_some_and(|iv| iv.first <= ix)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for Intervals {
    /// Two adjacent indexes print as "3,4", longer runs as "3-5".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (n, iv) in self.0.iter().enumerate() {
            if n > 0 {
                f.write_str(",")?;
            }
            write!(f, "{}", iv.first)?;
            if iv.last == iv.first + 1 {
                write!(f, ",{}", iv.last)?;
            } else if iv.last > iv.first {
                write!(f, "-{}", iv.last)?;
            }
        }
        Ok(())
    }
}

/// The first `count` indexes below `completions` not in `taken`.
pub fn first_pending(taken: &Intervals, count: usize, completions: i64) -> Vec<i64> {
    let mut out = Vec::with_capacity(count.min(1024));
    let mut candidate = 0i64;
    for iv in &taken.0 {
        while candidate < completions && out.len() < count && candidate < iv.first {
            out.push(candidate);
            candidate += 1;
        }
        candidate = candidate.max(iv.last + 1);
    }
    while candidate < completions && out.len() < count {
        out.push(candidate);
        candidate += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_format_round_trip() {
        let iv = Intervals::parse("0,2-4,6,7", 10);
        assert_eq!(iv.to_string(), "0,2-4,6,7");
        assert_eq!(iv.total(), 6);
        assert!(iv.has(3) && iv.has(7) && !iv.has(1) && !iv.has(5) && !iv.has(9));
        // Indexes at or beyond completions are dropped; adjacent pieces merge.
        assert_eq!(Intervals::parse("1,2,3-9", 5).to_string(), "1-4");
        assert_eq!(Intervals::parse("x,1", 5).to_string(), "1");
        assert_eq!(Intervals::parse("", 5).total(), 0);
    }

    #[test]
    fn merging_and_pending() {
        let iv = Intervals::parse("1,5-6", 10).with_indexes([0, 2, 7, 9]);
        assert_eq!(iv.to_string(), "0-2,5-7,9");
        assert_eq!(first_pending(&iv, 3, 10), vec![3, 4, 8]);
        assert_eq!(first_pending(&iv, 10, 10), vec![3, 4, 8]);
        assert_eq!(first_pending(&Intervals::default(), 2, 10), vec![0, 1]);
        assert_eq!(
            Intervals::parse("0-3", 10)
                .merge(&Intervals::parse("2-6,8", 10))
                .to_string(),
            "0-6,8"
        );
    }
}
