//! The deployments of each group ordered by routing score, so that a selection takes its best
//! candidates in O(log n) instead of scoring the whole group on every request.
//!
//! - usage-based, least-busy, latency-based: a min-tree per group (two for latency routing:
//!   completions and streams rank differently). Leaves hold each member's score; a deployment's
//!   live state marks it changed whenever it changes (its [`Watch`]), and the next selection
//!   re-scores only the marked ones — O(changes × log n), about one per request.
//! - simple-shuffle: the group's cumulative shares; a weighted draw is a binary search.
//!
//! The index only proposes: [`super::select`] still checks each candidate (window, cooldown,
//! this request's failures, rpm/tpm) and scans the group when none of them will do.

use std::cmp::{Ordering as Order, Reverse};
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::config::RoutingStrategy;

use super::deployment::Deployment;
use super::select::score;
use super::state::MINUTE_MS;

/// How many candidates a selection takes from the index before it falls back to a scan.
pub const CANDIDATES: usize = 4;

/// Up to [`CANDIDATES`] deployments, best first, as the index gives them; one more as a
/// selection's list of those at their limits (the best, then up to [`CANDIDATES`] others).
#[derive(Default)]
pub struct Candidates {
    ids: [usize; CANDIDATES + 1],
    len: usize,
}

impl Candidates {
    pub fn as_slice(&self) -> &[usize] {
        &self.ids[..self.len]
    }

    pub fn contains(&self, i: usize) -> bool {
        self.as_slice().contains(&i)
    }

    /// Adds one; a full list stays as it is.
    pub fn push(&mut self, i: usize) {
        if self.len < self.ids.len() {
            self.ids[self.len] = i;
            self.len += 1;
        }
    }
}

/// Held by one deployment's live state: says "my score may have changed" to the index.
#[derive(Clone)]
pub struct Watch {
    changes: Arc<Changes>,
    at: usize,
}

impl Watch {
    pub fn changed(&self) {
        let c = &self.changes;
        // Once marked, further changes before the next selection cost one atomic each.
        if !c.marked[self.at].swap(true, Ordering::AcqRel) {
            lock(&c.queue).push(self.at);
        }
    }
}

struct Changes {
    marked: Vec<AtomicBool>,
    queue: Mutex<Vec<usize>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Nothing here is left half-updated by a panic that matters: keep going.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// (minute, score bits): usage-based scores count only in their minute, and an older minute is
/// a smaller key — its usage is 0 now. Scores are never negative, so their bits order as they do.
type Key = (u64, u64);
/// Not a candidate (cooling down, or no member at this leaf).
const NONE: Key = (u64::MAX, u64::MAX);

#[derive(Clone, Copy, Debug, PartialEq)]
struct Node {
    key: Key,
    /// Leaves below with this key: ties are broken uniformly at random.
    ties: u32,
}

const EMPTY: Node = Node { key: NONE, ties: 0 };

fn join(a: Node, b: Node) -> Node {
    match a.key.cmp(&b.key) {
        Order::Less => a,
        Order::Greater => b,
        Order::Equal => Node {
            key: a.key,
            ties: a.ties + b.ties,
        },
    }
}

/// A min-tree over one group's members (leaf `j` is `members[j]`).
struct Tree {
    base: usize,
    nodes: Vec<Node>,
    members: Vec<usize>,
}

impl Tree {
    fn new(members: &[usize]) -> Tree {
        let base = members.len().next_power_of_two();
        Tree {
            base,
            nodes: vec![EMPTY; 2 * base],
            members: members.to_vec(),
        }
    }

    fn set(&mut self, leaf: usize, node: Node) {
        let mut p = self.base + leaf;
        self.nodes[p] = node;
        while p > 1 {
            p /= 2;
            self.nodes[p] = join(self.nodes[2 * p], self.nodes[2 * p + 1]);
        }
    }

    fn put(&mut self, leaf: usize, key: Key) {
        let node = if key == NONE {
            EMPTY
        } else {
            Node { key, ties: 1 }
        };
        self.set(leaf, node);
    }

    /// The leaf of a lowest key, uniformly among equal ones; `None` when every leaf is empty.
    fn pick(&self) -> Option<usize> {
        if self.nodes[1].ties == 0 {
            return None;
        }
        let mut p = 1;
        while p < self.base {
            let (l, r) = (self.nodes[2 * p], self.nodes[2 * p + 1]);
            let key = self.nodes[p].key;
            p = match (l.key == key, r.key == key) {
                (true, true) if fastrand::u32(..l.ties + r.ties) >= l.ties => 2 * p + 1,
                (true, _) => 2 * p,
                _ => 2 * p + 1,
            };
        }
        Some(p - self.base)
    }

    /// The best `n` members (at most [`CANDIDATES`]), best first; the tree is left as it was.
    /// Each but the last is hidden while the next is picked: the best alone costs one walk
    /// down, no update.
    fn best(&mut self, n: usize) -> Candidates {
        let n = n.min(CANDIDATES);
        let mut out = Candidates::default();
        let mut taken = [(0, EMPTY); CANDIDATES];
        let mut hidden = 0;
        while out.len < n {
            let Some(leaf) = self.pick() else { break };
            out.push(self.members[leaf]);
            if out.len == n {
                break;
            }
            taken[hidden] = (leaf, self.nodes[self.base + leaf]);
            hidden += 1;
            self.set(leaf, EMPTY);
        }
        for &(leaf, node) in taken[..hidden].iter().rev() {
            self.set(leaf, node);
        }
        out
    }
}

/// A group's members with their cumulative shares (simple-shuffle).
struct Shares {
    members: Vec<usize>,
    cumulative: Vec<f64>,
}

impl Shares {
    fn new(deployments: &[Deployment], members: &[usize]) -> Shares {
        let mut sum = 0.0;
        let cumulative = members
            .iter()
            .map(|&i| {
                let s = deployments[i].share;
                sum += if s.is_finite() && s > 0.0 { s } else { 0.0 };
                sum
            })
            .collect();
        Shares {
            members: members.to_vec(),
            cumulative,
        }
    }

    /// `n` (at most [`CANDIDATES`]) independent draws, each member with probability
    /// proportional to its share: the first that can take the request is a weighted draw among
    /// those that can.
    fn draw(&self, n: usize) -> Candidates {
        let n = n.min(CANDIDATES);
        let mut out = Candidates::default();
        let total = self.cumulative.last().copied().unwrap_or(0.0);
        if !(total.is_finite() && total > 0.0) {
            return out;
        }
        while out.len < n {
            let x = fastrand::f64() * total;
            let j = self.cumulative.partition_point(|&c| c <= x);
            out.push(self.members[j.min(self.members.len() - 1)]);
        }
        out
    }
}

struct Trees {
    /// Per group, per ranking (latency-based: completions, then streams).
    groups: Vec<Vec<Tree>>,
    /// `leaf[g][i]`: deployment `i`'s leaf in group `g`'s trees.
    leaf: Vec<Vec<Option<usize>>>,
    /// Cooling deployments by the end of their cooldown: their leaves come back then.
    cooling: BinaryHeap<Reverse<(u64, usize)>>,
    /// The change queue's buffer, swapped in and out so that draining allocates nothing.
    spare: Vec<usize>,
}

pub struct ScoreIndex {
    strategy: RoutingStrategy,
    changes: Arc<Changes>,
    shares: Vec<Shares>,
    trees: Mutex<Trees>,
}

impl ScoreIndex {
    /// Indexes `groups` (lists of deployment positions) for `strategy`; the caller hands each
    /// deployment's state its [`ScoreIndex::watch`].
    pub fn new(
        strategy: RoutingStrategy,
        deployments: &[Deployment],
        groups: &[&[usize]],
        now: u64,
    ) -> ScoreIndex {
        let rankings = match strategy {
            RoutingStrategy::SimpleShuffle => 0,
            RoutingStrategy::LatencyBased => 2,
            RoutingStrategy::UsageBased | RoutingStrategy::LeastBusy => 1,
        };
        let mut trees = Trees {
            groups: groups
                .iter()
                .map(|m| (0..rankings).map(|_| Tree::new(m)).collect())
                .collect(),
            leaf: groups
                .iter()
                .map(|m| {
                    let mut at = vec![None; deployments.len()];
                    for (j, &i) in m.iter().enumerate() {
                        at[i] = Some(j);
                    }
                    at
                })
                .collect(),
            cooling: BinaryHeap::new(),
            spare: Vec::new(),
        };
        if rankings > 0 {
            for i in 0..deployments.len() {
                trees.rescore(strategy, deployments, i, now);
            }
        }
        ScoreIndex {
            strategy,
            changes: Arc::new(Changes {
                marked: (0..deployments.len())
                    .map(|_| AtomicBool::new(false))
                    .collect(),
                queue: Mutex::new(Vec::new()),
            }),
            shares: groups.iter().map(|m| Shares::new(deployments, m)).collect(),
            trees: Mutex::new(trees),
        }
    }

    /// What deployment `i`'s state calls on every change.
    pub fn watch(&self, i: usize) -> Watch {
        Watch {
            changes: self.changes.clone(),
            at: i,
        }
    }

    /// The best `n` (at most [`CANDIDATES`]) candidates of group `g` for a request (`stream`:
    /// latency routing ranks by time to first chunk), best first, ties in random order. Cooling
    /// deployments are left out (simple-shuffle's draws are checked by the caller).
    pub fn candidates(
        &self,
        g: usize,
        deployments: &[Deployment],
        stream: bool,
        now: u64,
        n: usize,
    ) -> Candidates {
        if self.strategy == RoutingStrategy::SimpleShuffle {
            return self
                .shares
                .get(g)
                .map_or_else(Candidates::default, |s| s.draw(n));
        }
        let mut t = lock(&self.trees);
        t.catch_up(self.strategy, &self.changes, deployments, now);
        let ranking = usize::from(stream && self.strategy == RoutingStrategy::LatencyBased);
        t.groups
            .get_mut(g)
            .and_then(|rankings| rankings.get_mut(ranking))
            .map_or_else(Candidates::default, |tree| tree.best(n))
    }
}

impl Trees {
    /// Re-scores the deployments changed since the last selection and those whose cooldown
    /// ended.
    fn catch_up(
        &mut self,
        strategy: RoutingStrategy,
        changes: &Changes,
        deployments: &[Deployment],
        now: u64,
    ) {
        let mut changed = std::mem::take(&mut self.spare);
        std::mem::swap(&mut changed, &mut *lock(&changes.queue));
        for &i in &changed {
            // Unmarked before it is read: a change from now on is seen next time.
            changes.marked[i].store(false, Ordering::Release);
            self.rescore(strategy, deployments, i, now);
        }
        changed.clear();
        self.spare = changed;
        while let Some(&Reverse((until, i))) = self.cooling.peek() {
            if until > now {
                break;
            }
            self.cooling.pop();
            self.rescore(strategy, deployments, i, now);
        }
    }

    fn rescore(
        &mut self,
        strategy: RoutingStrategy,
        deployments: &[Deployment],
        i: usize,
        now: u64,
    ) {
        let Some(d) = deployments.get(i) else { return };
        let cooling = d.state.is_cooling(now);
        if cooling {
            let until = d.state.cooldown(now).map_or(now + 1, |c| c.until_ms);
            self.cooling.push(Reverse((until, i)));
        }
        let minute = if strategy == RoutingStrategy::UsageBased {
            now / MINUTE_MS
        } else {
            0
        };
        for (g, rankings) in self.groups.iter_mut().enumerate() {
            let Some(leaf) = self.leaf[g][i] else {
                continue;
            };
            for (r, tree) in rankings.iter_mut().enumerate() {
                let key = if cooling {
                    NONE
                } else {
                    (minute, score(strategy, d, r == 1, now).max(0.0).to_bits())
                };
                tree.put(leaf, key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The lowest key among `keys`, and every leaf that has it.
    fn brute(keys: &[Key]) -> Option<(Key, Vec<usize>)> {
        let min = *keys.iter().filter(|k| **k != NONE).min()?;
        Some((min, (0..keys.len()).filter(|&j| keys[j] == min).collect()))
    }

    #[test]
    fn the_tree_finds_the_lowest_key_after_any_updates() {
        fastrand::seed(7);
        for n in [1, 2, 3, 5, 8, 13, 100] {
            let members: Vec<usize> = (0..n).collect();
            let mut tree = Tree::new(&members);
            let mut keys = vec![NONE; n];
            for step in 0..2_000 {
                let j = fastrand::usize(..n);
                let key = if fastrand::u8(..10) == 0 {
                    NONE
                } else {
                    (fastrand::u64(..3), fastrand::u64(..5))
                };
                keys[j] = key;
                tree.put(j, key);
                match (brute(&keys), tree.pick()) {
                    (None, None) => {}
                    (Some((min, at)), Some(leaf)) => {
                        assert_eq!(keys[leaf], min, "n {n} step {step}");
                        assert!(at.contains(&leaf));
                    }
                    (want, got) => panic!("n {n} step {step}: {want:?} vs {got:?}"),
                }
            }
        }
    }

    #[test]
    fn ties_are_broken_uniformly() {
        fastrand::seed(11);
        let members: Vec<usize> = (0..6).collect();
        let mut tree = Tree::new(&members);
        for j in 0..6 {
            // Leaves 1, 2, 4 share the lowest key.
            let key = if [1, 2, 4].contains(&j) {
                (0, 3)
            } else {
                (0, 9)
            };
            tree.put(j, key);
        }
        let mut count = [0u32; 6];
        for _ in 0..3_000 {
            count[tree.pick().unwrap()] += 1;
        }
        for j in [1, 2, 4] {
            assert!((800..=1_200).contains(&count[j]), "{count:?}");
        }
        assert_eq!(count[0] + count[3] + count[5], 0, "{count:?}");
    }

    #[test]
    fn the_best_come_in_order_and_the_tree_is_left_as_it_was() {
        let members = vec![10, 11, 12, 13, 14, 15];
        let mut tree = Tree::new(&members);
        for (j, s) in [5u64, 1, 4, 2, 9, 3].into_iter().enumerate() {
            tree.put(j, (0, s));
        }
        let before = tree.nodes.clone();
        assert_eq!(tree.best(CANDIDATES).as_slice(), &[11, 13, 15, 12]);
        assert_eq!(tree.nodes, before);
        // Fewer: the same order, cut short; more than CANDIDATES: CANDIDATES.
        assert_eq!(tree.best(1).as_slice(), &[11]);
        assert_eq!(tree.best(2).as_slice(), &[11, 13]);
        assert_eq!(tree.best(9).as_slice(), &[11, 13, 15, 12]);
        assert_eq!(tree.nodes, before);
        tree.put(1, NONE);
        tree.put(3, NONE);
        tree.put(5, NONE);
        tree.put(2, NONE);
        assert_eq!(tree.best(CANDIDATES).as_slice(), &[10, 14], "only two left");
    }

    #[test]
    fn an_older_minute_ranks_first() {
        // Usage-based: 900 tokens last minute is 0 tokens now, below 5 tokens this minute.
        let mut tree = Tree::new(&[0, 1]);
        tree.put(0, (41, 5f64.to_bits()));
        tree.put(1, (40, 900f64.to_bits()));
        assert_eq!(tree.pick(), Some(1));
    }

    #[test]
    fn draws_follow_the_shares() {
        fastrand::seed(3);
        let shares = Shares {
            members: vec![7, 8, 9],
            cumulative: vec![1.0, 1.0, 4.0],
        };
        let mut count = [0u32; 3];
        for _ in 0..1_000 {
            for i in shares.draw(CANDIDATES).as_slice() {
                count[i - 7] += 1;
            }
        }
        assert_eq!(count[1], 0, "a share of 0 is never drawn: {count:?}");
        assert!((800..=1_200).contains(&count[0]), "{count:?}");
        assert!((2_800..=3_200).contains(&count[2]), "{count:?}");
        let none = Shares {
            members: vec![1],
            cumulative: vec![0.0],
        };
        assert_eq!(none.draw(CANDIDATES).as_slice(), &[] as &[usize]);
    }
}
