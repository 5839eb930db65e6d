//! Scheduling failover steps: who goes first when there are more ready
//! steps than slots.
//!
//! # The problem
//!
//! A failover plan is a DAG of steps with estimated durations. Without a cap
//! on parallelism the answer is trivial: start every step as soon as its
//! predecessors finish (ASAP); the makespan is then the critical path, which
//! no schedule can beat. With `--parallel N` steps compete for N slots, and
//! the order in which ready steps are started decides which services come
//! back first and which contractual RTO targets are missed. Minimising
//! weighted lateness under precedence and a machine cap is NP-hard, so we
//! use a list-scheduling heuristic: whenever a slot is free, start the most
//! urgent ready step.
//!
//! # What "urgent" means
//!
//! A step is as urgent as the most urgent thing that waits for it. A
//! datastore's promote has no tier of its own, but if a tier-0 service with
//! a 90-second customer contract depends on it, it inherits that tier and
//! that deadline, minus the time the steps after it still need. For each
//! step `s` with duration `d(s)` and successors `succ(s)`:
//!
//! * `tier(s)`: the most important tier among its own entity and
//!   everything downstream: the first sort key, because restoring tier-0
//!   first is what the tiers are for;
//! * `LF(s) = min(T(s), min over t in succ(s) of LF(t) - d(t))`, the latest
//!   finish that still lets every dependent entity meet its target `T` (its
//!   RTO target, contracts included), and `LS(s) = LF(s) - d(s)`, its latest
//!   start: the second key, earliest first ("modified due dates",
//!   Blazewicz 1976, i.e. the backward pass of critical-path scheduling);
//! * a ready step whose latest start has already passed will be late
//!   whatever happens. Earliest-deadline-first collapses under overload
//!   when it keeps feeding such steps ahead of steps that could still make
//!   it; never running them first is no better (it delays the critical
//!   path for steps with slack to spare). So a late step goes first unless
//!   the most urgent on-time step of its tier has less slack than the late
//!   step takes, i.e. unless running it would make that step late too;
//! * then the longest remaining path `BL(s) = d(s) + max BL(succ)`, which
//!   keeps the makespan close to the critical path, then file order.
//!
//! All of it is computed in O(V + E), and the simulation runs in
//! O(V log V), so 100k-step plans take milliseconds.
//!
//! # Why not the obvious rule
//!
//! "Tier first, then file order" (kept here as [`Policy::TierThenOrder`] so
//! the two can be compared) looks only at each step's own entity. A
//! datastore that serves tier-0 services but carries no tier of its own waits
//! behind every tier-2 step, and among tier-0 steps a long chain is started
//! no earlier than a short one. `drctl bench scheduler` compares both on
//! generated topologies (numbers in docs/numbers.md). Where capacity is roughly
//! adequate the prioritised rule restores tier-0 sooner and misses no more
//! targets, with a makespan within 10% of the lower bound
//! `max(critical path, total work / N)`. In deep overload (makespans many
//! times the tier-0 target) it still restores tier-0 sooner, but can miss
//! more lower-tier targets than the baseline: putting tier-0 first is then
//! a real trade-off, and the one the tiers ask for.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// One step to schedule. Steps must be given in a topological order: every
/// predecessor's index is smaller than the step's own.
#[derive(Debug, Clone, Default)]
pub struct Task {
    /// Estimated duration, in microseconds.
    pub duration: u64,
    pub preds: Vec<usize>,
    /// The RTO target of the step's entity (microseconds from declaration).
    pub deadline: Option<u64>,
    /// The step's entity's tier rank; lower is more important.
    pub tier: Option<usize>,
}

/// How ready steps compete for slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// Inherited deadlines, then inherited tier, then longest remaining path.
    Prioritised,
    /// The baseline: the step's own tier, then file order.
    TierThenOrder,
}

/// Start and finish of every step, in microseconds from the declaration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    pub start: Vec<u64>,
    pub finish: Vec<u64>,
}

impl Schedule {
    pub fn makespan(&self) -> u64 {
        self.finish.iter().copied().max().unwrap_or(0)
    }
}

/// Schedules `tasks` with at most `cap` running at once (`None`: no cap).
pub fn schedule(tasks: &[Task], cap: Option<usize>, policy: Policy) -> Schedule {
    let n = tasks.len();
    let mut start = vec![0u64; n];
    let mut finish = vec![0u64; n];
    match cap {
        None => {
            for (i, t) in tasks.iter().enumerate() {
                debug_assert!(t.preds.iter().all(|&p| p < i), "tasks are not in topological order");
                start[i] = t.preds.iter().map(|&p| finish[p]).max().unwrap_or(0);
                finish[i] = start[i] + t.duration;
            }
        }
        Some(cap) => {
            let cap = cap.max(1);
            let key = priorities(tasks, policy);
            let mut succs: Vec<Vec<usize>> = vec![Vec::new(); n];
            let mut waiting: Vec<usize> = vec![0; n];
            for (i, t) in tasks.iter().enumerate() {
                waiting[i] = t.preds.len();
                for &p in &t.preds {
                    succs[p].push(i);
                }
            }
            let mut ready: BinaryHeap<Reverse<(Key, usize)>> =
                (0..n).filter(|&i| waiting[i] == 0).map(|i| Reverse((key[i], i))).collect();
            // Ready steps whose latest start has passed: late whatever happens.
            let mut late: BinaryHeap<Reverse<(Key, usize)>> = BinaryHeap::new();
            let mut running: BinaryHeap<Reverse<(u64, usize)>> = BinaryHeap::new();
            let mut now = 0u64;
            loop {
                while running.len() < cap {
                    if policy == Policy::Prioritised {
                        while let Some(&Reverse((k, i))) = ready.peek() {
                            if k.latest_start >= now as i64 {
                                break;
                            }
                            ready.pop();
                            late.push(Reverse((k, i)));
                        }
                    }
                    let take_late = match (ready.peek(), late.peek()) {
                        (Some(Reverse((on_time, _))), Some(Reverse((behind, j)))) => {
                            // A late step goes first unless it would make an
                            // on-time step of the same tier late as well.
                            behind.tier < on_time.tier
                                || (behind.tier == on_time.tier
                                    && on_time.latest_start.saturating_sub(now as i64) >= tasks[*j].duration as i64)
                        }
                        (None, Some(_)) => true,
                        _ => false,
                    };
                    let popped = if take_late { late.pop() } else { ready.pop() };
                    let Some(Reverse((_, i))) = popped else { break };
                    start[i] = now;
                    finish[i] = now + tasks[i].duration;
                    running.push(Reverse((finish[i], i)));
                }
                let Some(Reverse((t, _))) = running.peek().copied() else {
                    break;
                };
                now = t;
                while let Some(Reverse((t, i))) = running.peek().copied() {
                    if t != now {
                        break;
                    }
                    running.pop();
                    for &s in &succs[i] {
                        waiting[s] -= 1;
                        if waiting[s] == 0 {
                            ready.push(Reverse((key[s], s)));
                        }
                    }
                }
            }
        }
    }
    Schedule { start, finish }
}

/// Sort key of a ready step: smaller starts first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Key {
    tier: usize,
    latest_start: i64,
    remaining: Reverse<u64>,
}

fn priorities(tasks: &[Task], policy: Policy) -> Vec<Key> {
    let n = tasks.len();
    match policy {
        Policy::TierThenOrder => tasks
            .iter()
            .map(|t| Key { tier: t.tier.unwrap_or(usize::MAX), latest_start: 0, remaining: Reverse(0) })
            .collect(),
        Policy::Prioritised => {
            let mut latest_finish: Vec<i64> = tasks.iter().map(|t| t.deadline.map_or(i64::MAX, |d| d as i64)).collect();
            let mut tier: Vec<usize> = tasks.iter().map(|t| t.tier.unwrap_or(usize::MAX)).collect();
            let mut bottom: Vec<u64> = vec![0; n];
            for i in (0..n).rev() {
                bottom[i] += tasks[i].duration;
                let latest_start = latest_finish[i].saturating_sub(tasks[i].duration as i64);
                for &p in &tasks[i].preds {
                    latest_finish[p] = latest_finish[p].min(latest_start);
                    tier[p] = tier[p].min(tier[i]);
                    bottom[p] = bottom[p].max(bottom[i]);
                }
            }
            (0..n)
                .map(|i| {
                    let ls = if latest_finish[i] == i64::MAX {
                        i64::MAX
                    } else {
                        latest_finish[i].saturating_sub(tasks[i].duration as i64)
                    };
                    Key { tier: tier[i], latest_start: ls, remaining: Reverse(bottom[i]) }
                })
                .collect()
        }
    }
}

/// The longest chain of dependent steps in an ASAP schedule, first to last,
/// and its length. Ties go to the earlier step.
pub fn critical_path(tasks: &[Task], asap: &Schedule) -> (Vec<usize>, u64) {
    let Some(last) = (0..tasks.len()).max_by_key(|&i| (asap.finish[i], Reverse(i))) else {
        return (Vec::new(), 0);
    };
    let mut path = vec![last];
    let mut at = last;
    while let Some(&p) = tasks[at].preds.iter().max_by_key(|&&p| (asap.finish[p], Reverse(p))) {
        if asap.finish[p] != asap.start[at] {
            break;
        }
        path.push(p);
        at = p;
    }
    path.reverse();
    (path, asap.finish[last])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(duration: u64, preds: &[usize]) -> Task {
        Task { duration, preds: preds.to_vec(), ..Task::default() }
    }

    #[test]
    fn without_a_cap_steps_start_as_soon_as_possible() {
        let tasks = [t(30, &[]), t(35, &[]), t(20, &[0, 1]), t(10, &[2])];
        let s = schedule(&tasks, None, Policy::Prioritised);
        assert_eq!(s.start, vec![0, 0, 35, 55]);
        assert_eq!(s.makespan(), 65);
        let (path, len) = critical_path(&tasks, &s);
        assert_eq!(path, vec![1, 2, 3]);
        assert_eq!(len, 65);
    }

    #[test]
    fn a_cap_of_one_runs_steps_back_to_back() {
        let tasks = [t(3, &[]), t(4, &[]), t(5, &[])];
        let s = schedule(&tasks, Some(1), Policy::Prioritised);
        assert_eq!(s.makespan(), 12);
        let mut intervals: Vec<(u64, u64)> = s.start.iter().copied().zip(s.finish.iter().copied()).collect();
        intervals.sort();
        assert!(intervals.windows(2).all(|w| w[0].1 <= w[1].0));
    }

    #[test]
    fn an_untiered_datastore_inherits_the_urgency_of_the_tier0_service_on_it() {
        // 0: tier-2 job, 1: untiered datastore, 2: tier-0 service needing 1 (target 40).
        let tasks = [
            Task { duration: 30, tier: Some(2), deadline: Some(10_000), ..t(30, &[]) },
            Task { duration: 30, ..t(30, &[]) },
            Task { duration: 10, tier: Some(0), deadline: Some(40), ..t(10, &[1]) },
        ];
        let baseline = schedule(&tasks, Some(1), Policy::TierThenOrder);
        let ours = schedule(&tasks, Some(1), Policy::Prioritised);
        assert_eq!(baseline.finish[2], 70, "the baseline runs the tier-2 job first");
        assert_eq!(ours.finish[2], 40, "the datastore inherits the service's deadline");
    }

    #[test]
    fn without_targets_the_longest_remaining_path_goes_first() {
        // Two chains: 0 -> 1 -> 2 (long) and 3 (short), one slot... two slots.
        let tasks = [t(10, &[]), t(10, &[0]), t(10, &[1]), t(10, &[]), t(10, &[])];
        let s = schedule(&tasks, Some(2), Policy::Prioritised);
        assert_eq!(s.start[0], 0, "the head of the long chain starts at once");
        assert_eq!(s.makespan(), 30);
    }
}
