//! Postgres snapshots (`pg_snapshot` text form `xmin:xmax:xip,...`) and the
//! visibility arithmetic the listener and cursors are built on.

use std::fmt;
use std::str::FromStr;

/// A transaction snapshot: which transaction ids had committed when it was taken.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    xmin: u64,
    xmax: u64,
    /// In progress when the snapshot was taken; sorted.
    xip: Vec<u64>,
}

/// A snapshot string that is not of the form `xmin:xmax:xip,...`.
#[derive(Debug, thiserror::Error)]
#[error("malformed snapshot {0:?}")]
pub struct SnapshotParseError(String);

impl Snapshot {
    /// Whether the writes of transaction `xid` are visible in this snapshot.
    pub fn sees(&self, xid: u64) -> bool {
        if xid < self.xmin {
            true
        } else if xid >= self.xmax {
            false
        } else {
            self.xip.binary_search(&xid).is_err()
        }
    }

    /// Whether everything visible in `other` is visible in `self` (so that
    /// `self` is at or after `other` for every transaction).
    pub fn covers(&self, other: &Snapshot) -> bool {
        other.xmax <= self.xmax
            && self
                .xip
                .iter()
                .take_while(|&&x| x < other.xmax)
                .all(|&x| !other.sees(x))
    }

    /// The smallest transaction id that may still be invisible.
    pub fn xmin(&self) -> u64 {
        self.xmin
    }
}

impl FromStr for Snapshot {
    type Err = SnapshotParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || SnapshotParseError(s.to_owned());
        let mut parts = s.splitn(3, ':');
        let xmin = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
        let xmax = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
        let xip_text = parts.next().ok_or_else(bad)?;
        let mut xip = xip_text
            .split(',')
            .filter(|p| !p.is_empty())
            .map(|p| p.parse::<u64>().map_err(|_| bad()))
            .collect::<Result<Vec<_>, _>>()?;
        xip.sort_unstable();
        if xmin > xmax {
            return Err(bad());
        }
        Ok(Snapshot { xmin, xmax, xip })
    }
}

impl fmt::Display for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:", self.xmin, self.xmax)?;
        for (i, x) in self.xip.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{x}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(s: &str) -> Snapshot {
        s.parse().unwrap()
    }

    #[test]
    fn visibility_follows_xmin_xmax_and_in_progress_list() {
        let s = snap("10:20:12,15");
        assert!(s.sees(9));
        assert!(s.sees(11));
        assert!(!s.sees(12));
        assert!(!s.sees(15));
        assert!(s.sees(19));
        assert!(!s.sees(20));
        assert_eq!(s.to_string(), "10:20:12,15");
    }

    #[test]
    fn a_later_snapshot_covers_an_earlier_one_but_not_the_reverse() {
        let early = snap("10:20:12,15");
        let late = snap("15:30:15,25");
        assert!(late.covers(&early));
        assert!(!early.covers(&late));
        // 12 committed between; 15 still running in both.
        assert!(late.covers(&snap("10:16:12,15")));
        // Still running in `later` but visible in `other`: not covered.
        assert!(!snap("11:30:11").covers(&snap("12:13:")));
    }

    #[test]
    fn malformed_snapshots_are_rejected() {
        for bad in ["", "1", "1:2", "a:2:", "3:2:", "1:5:x"] {
            assert!(bad.parse::<Snapshot>().is_err(), "{bad}");
        }
    }
}
