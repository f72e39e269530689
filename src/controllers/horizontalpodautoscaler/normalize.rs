//! From the metrics' recommendation to the replica count the HPA sets, as
//! upstream normalizes it: stabilization windows over past recommendations,
//! then the min/max bounds and the scaling rate (the fixed "double or +4"
//! rule without `behavior`, the Pods/Percent policies with it). Each step
//! reports the condition upstream sets (AbleToScale / ScalingLimited).

use std::time::Duration;

use jiff::Timestamp;

/// A recommendation the metrics made at some time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Recommendation {
    pub replicas: i32,
    pub at: Timestamp,
}

/// A change the controller made, for the rate policies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScaleEvent {
    pub change: i32,
    pub at: Timestamp,
    pub outdated: bool,
}

/// One direction's rules (`HPAScalingRules`) with defaults filled in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rules {
    pub stabilization: Duration,
    /// "Max", "Min" or "Disabled".
    pub select: String,
    /// (type "Pods"/"Percent", value, period).
    pub policies: Vec<(String, i32, Duration)>,
}

impl Rules {
    /// Upstream's defaults for scale-up: no window, +4 pods or +100 % per 15 s.
    pub fn default_up() -> Rules {
        Rules {
            stabilization: Duration::ZERO,
            select: "Max".into(),
            policies: vec![
                ("Pods".into(), 4, Duration::from_secs(15)),
                ("Percent".into(), 100, Duration::from_secs(15)),
            ],
        }
    }
    /// Upstream's defaults for scale-down: the controller's window, -100 % per 15 s.
    pub fn default_down(window: Duration) -> Rules {
        Rules {
            stabilization: window,
            select: "Max".into(),
            policies: vec![("Percent".into(), 100, Duration::from_secs(15))],
        }
    }
    fn longest_period(&self) -> Duration {
        self.policies
            .iter()
            .map(|p| p.2)
            .max()
            .unwrap_or(Duration::ZERO)
    }
}

/// A condition to set: (status, reason, message).
pub type Cond = (bool, &'static str, &'static str);

/// What normalization decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Normalized {
    pub replicas: i32,
    pub able_to_scale: Cond,
    pub scaling_limited: Cond,
}

const READY: Cond = (
    true,
    "ReadyForNewScale",
    "recommended size matches current size",
);
const DOWN_STABILIZED: Cond = (
    true,
    "ScaleDownStabilized",
    "recent recommendations were higher than current one, applying the highest recent recommendation",
);
const UP_STABILIZED: Cond = (
    true,
    "ScaleUpStabilized",
    "recent recommendations were lower than current one, applying the lowest recent recommendation",
);
const WITHIN_RANGE: (&str, &str) = (
    "DesiredWithinRange",
    "the desired count is within the acceptable range",
);
const TOO_FEW: (&str, &str) = (
    "TooFewReplicas",
    "the desired replica count is less than the minimum replica count",
);
const TOO_MANY: (&str, &str) = (
    "TooManyReplicas",
    "the desired replica count is more than the maximum replica count",
);
const UP_LIMIT: (&str, &str) = (
    "ScaleUpLimit",
    "the desired replica count is increasing faster than the maximum scale rate",
);
const DOWN_LIMIT: (&str, &str) = (
    "ScaleDownLimit",
    "the desired replica count is decreasing faster than the maximum scale rate",
);

fn before(t: Timestamp, d: Duration) -> Timestamp {
    jiff::SignedDuration::try_from(d)
        .ok()
        .and_then(|d| t.checked_sub(d).ok())
        .unwrap_or(Timestamp::MIN)
}

fn limited(
    replicas: i32,
    stabilized: i32,
    (reason, message): (&'static str, &'static str),
) -> Cond {
    // ScalingLimited is True only when the bound changed the answer.
    (replicas != stabilized, reason, message)
}

/// Per-HPA memory of recommendations and scale events.
#[derive(Clone, Debug, Default)]
pub struct History {
    pub recommendations: Vec<Recommendation>,
    pub up_events: Vec<ScaleEvent>,
    pub down_events: Vec<ScaleEvent>,
}

impl History {
    /// `recordInitialRecommendation`.
    pub fn init(&mut self, current: i32, now: Timestamp) {
        if self.recommendations.is_empty() {
            self.recommendations.push(Recommendation {
                replicas: current,
                at: now,
            });
        }
    }

    /// Record `rec`, reusing the slot of an expired one.
    fn record(&mut self, old: Option<usize>, rec: Recommendation) {
        match old {
            Some(i) => self.recommendations[i] = rec,
            None => self.recommendations.push(rec),
        }
    }

    /// Without `behavior`: the highest recommendation within the scale-down
    /// window, then min/max and "at most double, or 4".
    pub fn normalize(
        &mut self,
        now: Timestamp,
        window: Duration,
        current: i32,
        desired: i32,
        min: i32,
        max: i32,
    ) -> Normalized {
        let cutoff = before(now, window);
        let mut stabilized = desired;
        let mut old = None;
        for (i, r) in self.recommendations.iter().enumerate() {
            if r.at < cutoff {
                old = Some(i);
            } else if r.replicas > stabilized {
                stabilized = r.replicas;
            }
        }
        self.record(
            old,
            Recommendation {
                replicas: desired,
                at: now,
            },
        );
        let able = if stabilized != desired {
            DOWN_STABILIZED
        } else {
            READY
        };
        let up_limit = (current.saturating_mul(2)).max(4);
        let (max_allowed, max_cond) = if max > up_limit {
            (up_limit, UP_LIMIT)
        } else {
            (max, TOO_MANY)
        };
        let (replicas, why) = if stabilized < min {
            (min, TOO_FEW)
        } else if stabilized > max_allowed {
            (max_allowed, max_cond)
        } else {
            (stabilized, WITHIN_RANGE)
        };
        Normalized {
            replicas,
            able_to_scale: able,
            scaling_limited: limited(replicas, stabilized, why),
        }
    }

    /// With `behavior`: stabilize between the lowest recommendation of the
    /// scale-up window and the highest of the scale-down window, then apply
    /// the rate policies against recent scale events and min/max.
    #[allow(clippy::too_many_arguments)]
    pub fn normalize_with_behavior(
        &mut self,
        now: Timestamp,
        up: &Rules,
        down: &Rules,
        current: i32,
        desired: i32,
        min: i32,
        max: i32,
    ) -> Normalized {
        let up_cutoff = before(now, up.stabilization);
        let down_cutoff = before(now, down.stabilization);
        let (mut up_rec, mut down_rec) = (desired, desired);
        let mut old = None;
        for (i, r) in self.recommendations.iter().enumerate() {
            if r.at > up_cutoff {
                up_rec = up_rec.min(r.replicas);
            }
            if r.at > down_cutoff {
                down_rec = down_rec.max(r.replicas);
            }
            if r.at < up_cutoff && r.at < down_cutoff {
                old = Some(i);
            }
        }
        let stabilized = current.max(up_rec).min(down_rec);
        self.record(
            old,
            Recommendation {
                replicas: desired,
                at: now,
            },
        );
        let able = if stabilized == desired {
            READY
        } else if desired >= current {
            UP_STABILIZED
        } else {
            DOWN_STABILIZED
        };
        let (replicas, why) = if stabilized > current {
            let limit = up_limit(current, &self.up_events, up, now).max(current);
            let (allowed, cond) = if max > limit {
                (limit, UP_LIMIT)
            } else {
                (max, TOO_MANY)
            };
            if stabilized > allowed {
                (allowed, cond)
            } else {
                (stabilized, WITHIN_RANGE)
            }
        } else if stabilized < current {
            let limit = down_limit(current, &self.down_events, down, now).min(current);
            let (allowed, cond) = if min < limit {
                (limit, DOWN_LIMIT)
            } else {
                (min, TOO_FEW)
            };
            if stabilized < allowed {
                (allowed, cond)
            } else {
                (stabilized, WITHIN_RANGE)
            }
        } else {
            (stabilized, WITHIN_RANGE)
        };
        Normalized {
            replicas,
            able_to_scale: able,
            scaling_limited: limited(replicas, stabilized, why),
        }
    }

    /// `storeScaleEvent`: remember a change for the rate policies (only
    /// with `behavior`), reusing the slot of an event older than the
    /// longest policy period.
    pub fn store_event(&mut self, up: &Rules, down: &Rules, from: i32, to: i32, now: Timestamp) {
        let (events, rules, change) = if to > from {
            (&mut self.up_events, up, to - from)
        } else {
            (&mut self.down_events, down, from - to)
        };
        let cutoff = before(now, rules.longest_period());
        for e in events.iter_mut() {
            if e.at < cutoff {
                e.outdated = true;
            }
        }
        let ev = ScaleEvent {
            change,
            at: now,
            outdated: false,
        };
        match events.iter_mut().find(|e| e.outdated) {
            Some(slot) => *slot = ev,
            None => events.push(ev),
        }
    }
}

/// `getReplicasChangePerPeriod`.
fn change_in_period(events: &[ScaleEvent], period: Duration, now: Timestamp) -> i32 {
    let cutoff = before(now, period);
    events
        .iter()
        .filter(|e| e.at > cutoff)
        .map(|e| e.change)
        .sum()
}

/// `calculateScaleUpLimitWithScalingRules`.
fn up_limit(current: i32, events: &[ScaleEvent], rules: &Rules, now: Timestamp) -> i32 {
    if rules.select == "Disabled" {
        return current;
    }
    let min_select = rules.select == "Min";
    let mut result: Option<i32> = None;
    for (kind, value, period) in &rules.policies {
        let start = current - change_in_period(events, *period, now);
        let proposed = if kind == "Pods" {
            start.saturating_add(*value)
        } else {
            (f64::from(start) * (1.0 + f64::from(*value) / 100.0)).ceil() as i32
        };
        result = Some(match result {
            None => proposed,
            Some(r) if min_select => r.min(proposed),
            Some(r) => r.max(proposed),
        });
    }
    result.unwrap_or(current)
}

/// `calculateScaleDownLimitWithBehaviors`: for scaling down the "Min"
/// policy (the smallest change) is the highest count.
fn down_limit(current: i32, events: &[ScaleEvent], rules: &Rules, now: Timestamp) -> i32 {
    if rules.select == "Disabled" {
        return current;
    }
    let min_select = rules.select == "Min";
    let mut result: Option<i32> = None;
    for (kind, value, period) in &rules.policies {
        let start = current + change_in_period(events, *period, now);
        let proposed = if kind == "Pods" {
            start - value
        } else {
            (f64::from(start) * (1.0 - f64::from(*value) / 100.0)) as i32
        };
        result = Some(match result {
            None => proposed,
            Some(r) if min_select => r.max(proposed),
            Some(r) => r.min(proposed),
        });
    }
    result.unwrap_or(current)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + secs).unwrap()
    }

    #[test]
    fn without_behavior_scale_down_waits_for_the_window() {
        let mut h = History::default();
        let w = Duration::from_secs(300);
        h.init(5, t(0));
        // Metrics want 2 at once: the 5 recorded at t0 holds.
        let n = h.normalize(t(15), w, 5, 2, 1, 10);
        assert_eq!(n.replicas, 5);
        assert_eq!(n.able_to_scale.1, "ScaleDownStabilized");
        assert_eq!(
            n.scaling_limited,
            (
                false,
                "DesiredWithinRange",
                "the desired count is within the acceptable range"
            )
        );
        // Past the window only the recent recommendations count.
        let n = h.normalize(t(301), w, 5, 2, 1, 10);
        assert_eq!(n.replicas, 2);
        assert_eq!(n.able_to_scale.1, "ReadyForNewScale");
    }

    #[test]
    fn without_behavior_bounds_and_rate() {
        let mut h = History::default();
        let w = Duration::from_secs(300);
        // From 1, at most 4 at once.
        let n = h.normalize(t(0), w, 1, 10, 1, 10);
        assert_eq!(n.replicas, 4);
        assert!(n.scaling_limited.0);
        assert_eq!(n.scaling_limited.1, "ScaleUpLimit");
        // From 4, at most 8; max 5 binds first.
        let n = h.normalize(t(1), w, 4, 10, 1, 5);
        assert_eq!(n.replicas, 5);
        assert_eq!(n.scaling_limited.1, "TooManyReplicas");
        let mut h = History::default();
        let n = h.normalize(t(0), w, 3, 0, 2, 5);
        assert_eq!(n.replicas, 2);
        assert_eq!(n.scaling_limited, (true, TOO_FEW.0, TOO_FEW.1));
    }

    #[test]
    fn behavior_windows_both_ways() {
        let up = Rules {
            stabilization: Duration::from_secs(60),
            ..Rules::default_up()
        };
        let down = Rules::default_down(Duration::from_secs(120));
        let mut h = History::default();
        h.init(2, t(0));
        // Scale-up window 60 s: the lowest recent recommendation (2) holds.
        let n = h.normalize_with_behavior(t(10), &up, &down, 2, 6, 1, 10);
        assert_eq!(n.replicas, 2);
        assert_eq!(n.able_to_scale.1, "ScaleUpStabilized");
        // Once the 2 is older than 60 s, 6 is the lowest in the window.
        let n = h.normalize_with_behavior(t(61), &up, &down, 2, 6, 1, 10);
        assert_eq!(n.replicas, 6);
        assert_eq!(n.able_to_scale.1, "ReadyForNewScale");
        h.store_event(&up, &down, 2, 6, t(61));
        // Scale-down window 120 s: the 6s keep it at 6.
        let n = h.normalize_with_behavior(t(100), &up, &down, 6, 1, 1, 10);
        assert_eq!(n.replicas, 6);
        assert_eq!(n.able_to_scale.1, "ScaleDownStabilized");
        let n = h.normalize_with_behavior(t(200), &up, &down, 6, 1, 1, 10);
        assert_eq!(n.replicas, 1);
    }

    #[test]
    fn behavior_rate_policies() {
        let mut up = Rules::default_up();
        let down = Rules {
            stabilization: Duration::ZERO,
            select: "Max".into(),
            policies: vec![("Pods".into(), 1, Duration::from_secs(60))],
        };
        let mut h = History::default();
        // Default up: max(+4, +100 %) per 15 s: from 2 that is 6.
        let n = h.normalize_with_behavior(t(0), &up, &down, 2, 20, 1, 50);
        assert_eq!((n.replicas, n.scaling_limited.1), (6, "ScaleUpLimit"));
        h.store_event(&up, &down, 2, 6, t(0));
        // 5 s later the period still holds the +4: the limit stays 6.
        let n = h.normalize_with_behavior(t(5), &up, &down, 6, 20, 1, 50);
        assert_eq!(n.replicas, 6);
        // After the period, from 6: max(10, 12) = 12.
        let n = h.normalize_with_behavior(t(20), &up, &down, 6, 20, 1, 50);
        assert_eq!(n.replicas, 12);
        // selectPolicy Min picks the smaller: min(10, 12) = 10.
        up.select = "Min".into();
        let n = h.normalize_with_behavior(t(40), &up, &down, 6, 20, 1, 50);
        assert_eq!(n.replicas, 10);
        // Disabled: no scaling up at all.
        up.select = "Disabled".into();
        let n = h.normalize_with_behavior(t(60), &up, &down, 6, 20, 1, 50);
        assert_eq!(n.replicas, 6);
        // Down by one pod per minute.
        let mut h = History::default();
        let n = h.normalize_with_behavior(t(0), &up, &down, 6, 1, 1, 50);
        assert_eq!((n.replicas, n.scaling_limited.1), (5, "ScaleDownLimit"));
        h.store_event(&up, &down, 6, 5, t(0));
        let n = h.normalize_with_behavior(t(30), &up, &down, 5, 1, 1, 50);
        assert_eq!(n.replicas, 5);
        let n = h.normalize_with_behavior(t(61), &up, &down, 5, 1, 1, 50);
        assert_eq!(n.replicas, 4);
        // The minimum binds before the rate.
        let n = h.normalize_with_behavior(t(200), &up, &down, 2, 1, 2, 50);
        assert_eq!(
            (n.replicas, n.scaling_limited),
            (2, (true, TOO_FEW.0, TOO_FEW.1))
        );
    }
}
