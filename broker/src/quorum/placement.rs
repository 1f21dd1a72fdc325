//! Replica assignment for new topics and partitions: Kafka's rack-aware assignment, simplified.
//!
//! The brokers are sorted by id and laid out rack by rack in turn (racks by name, brokers without a
//! rack as one more rack): r1b1, r2b1, r3b1, r1b2, ... Partition `p`'s first replica (its preferred
//! leader) is the broker at `(start + p) % n` of that list, so leaders go round the brokers evenly and
//! `start` (e.g. a hash of the topic name) keeps topics from all starting at the same broker. Its other
//! replicas are the next brokers of the list (wrapping) on racks no replica is on yet, then, once
//! every rack has one, the next brokers not chosen yet: a partition spans min(rf, racks) racks.

use std::collections::BTreeMap;
use std::ops::Range;

/// The replicas of each partition of `partitions` (absolute indexes, so new partitions of a topic
/// continue its pattern), `replication_factor` each, first the preferred leader. `brokers`: the live
/// brokers (node id, rack), in any order. The caller ensures 1 <= `replication_factor` <= brokers.
pub fn assign_replicas(
    brokers: &[(i32, Option<String>)],
    partitions: Range<i32>,
    replication_factor: usize,
    start: usize,
) -> Vec<Vec<i32>> {
    debug_assert!(
        (1..=brokers.len()).contains(&replication_factor),
        "replication factor {replication_factor} for {} brokers",
        brokers.len()
    );
    debug_assert!(partitions.start >= 0, "negative partition index");
    let list = rack_alternating(brokers);
    let count = list.len();
    if count == 0 {
        return partitions.map(|_| Vec::new()).collect();
    }
    let replication_factor = replication_factor.min(count);
    partitions
        .map(|partition| {
            let first = (start % count + partition.max(0) as usize % count) % count;
            let next = |offset: usize| list[(first + offset) % count];
            let mut replicas = vec![list[first].0];
            let mut racks = vec![list[first].1];
            // Other racks first, then any broker not chosen yet.
            for offset in 1..count {
                let (node, rack) = next(offset);
                if replicas.len() < replication_factor && !racks.contains(&rack) {
                    replicas.push(node);
                    racks.push(rack);
                }
            }
            for offset in 1..count {
                let (node, _) = next(offset);
                if replicas.len() < replication_factor && !replicas.contains(&node) {
                    replicas.push(node);
                }
            }
            replicas
        })
        .collect()
}

/// The brokers by rack in turn, each with its rack's rank: one broker of each rack (by rack name,
/// brokers without a rack first), then the second of each, and so on; brokers of a rack by id.
fn rack_alternating(brokers: &[(i32, Option<String>)]) -> Vec<(i32, usize)> {
    let mut sorted: Vec<&(i32, Option<String>)> = brokers.iter().collect();
    sorted.sort_by_key(|(id, _)| *id);
    let mut racks: BTreeMap<Option<&str>, Vec<i32>> = BTreeMap::new();
    for (id, rack) in sorted {
        racks.entry(rack.as_deref()).or_default().push(*id);
    }
    let racks: Vec<Vec<i32>> = racks.into_values().collect();
    let deepest = racks.iter().map(Vec::len).max().unwrap_or(0);
    let mut list = Vec::with_capacity(brokers.len());
    for depth in 0..deepest {
        for (rank, members) in racks.iter().enumerate() {
            if let Some(id) = members.get(depth) {
                list.push((*id, rank));
            }
        }
    }
    list
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::{BTreeSet, HashMap};

    fn brokers(racks: &[(i32, Option<&str>)]) -> Vec<(i32, Option<String>)> {
        racks
            .iter()
            .map(|(id, rack)| (*id, rack.map(String::from)))
            .collect()
    }

    fn distinct(replicas: &[i32]) -> bool {
        replicas.iter().collect::<BTreeSet<_>>().len() == replicas.len()
    }

    fn rack_count(brokers: &[(i32, Option<String>)], replicas: &[i32]) -> usize {
        let rack: HashMap<i32, &Option<String>> = brokers.iter().map(|(id, r)| (*id, r)).collect();
        replicas
            .iter()
            .map(|id| rack[id])
            .collect::<BTreeSet<_>>()
            .len()
    }

    #[test]
    fn without_racks_replicas_follow_the_leader_by_id() {
        let brokers = brokers(&[(3, None), (1, None), (2, None)]);
        assert_eq!(
            assign_replicas(&brokers, 0..4, 2, 0),
            vec![vec![1, 2], vec![2, 3], vec![3, 1], vec![1, 2]]
        );
        // `start` rotates, and later partitions continue the pattern.
        assert_eq!(
            assign_replicas(&brokers, 0..2, 3, 1),
            vec![vec![2, 3, 1], vec![3, 1, 2]]
        );
        assert_eq!(
            assign_replicas(&brokers, 2..3, 2, 0),
            assign_replicas(&brokers, 0..3, 2, 0)[2..]
        );
    }

    #[test]
    fn replicas_are_distinct() {
        let brokers = brokers(&[
            (0, None),
            (1, None),
            (2, Some("a")),
            (3, Some("a")),
            (4, None),
        ]);
        for rf in 1..=brokers.len() {
            for replicas in assign_replicas(&brokers, 0..20, rf, 7) {
                assert_eq!(replicas.len(), rf);
                assert!(distinct(&replicas), "{replicas:?}");
            }
        }
    }

    #[test]
    fn preferred_leaders_spread_evenly() {
        let brokers = brokers(&[(5, Some("a")), (9, Some("b")), (2, Some("a")), (7, None)]);
        for start in [0, 3, usize::MAX] {
            let assignment = assign_replicas(&brokers, 0..12, 2, start);
            let mut firsts: BTreeMap<i32, usize> = BTreeMap::new();
            for replicas in &assignment {
                *firsts.entry(replicas[0]).or_default() += 1;
            }
            assert_eq!(firsts.values().copied().collect::<Vec<_>>(), vec![3; 4]);
        }
    }

    #[test]
    fn replicas_span_racks() {
        // Uneven racks: three brokers on "a", one on "b", one on "c".
        let brokers = brokers(&[
            (1, Some("a")),
            (2, Some("a")),
            (3, Some("a")),
            (4, Some("b")),
            (5, Some("c")),
        ]);
        for rf in 1..=brokers.len() {
            for replicas in assign_replicas(&brokers, 0..10, rf, 0) {
                assert_eq!(rack_count(&brokers, &replicas), rf.min(3), "{replicas:?}");
            }
        }
        assert_eq!(
            assign_replicas(&brokers, 0..3, 3, 0),
            vec![vec![1, 4, 5], vec![4, 5, 2], vec![5, 2, 4]]
        );
    }

    #[test]
    fn assignment_is_deterministic() {
        let one = brokers(&[(1, Some("x")), (2, Some("y")), (3, None), (4, Some("x"))]);
        let mut other = one.clone();
        other.reverse();
        assert_eq!(
            assign_replicas(&one, 0..50, 3, 11),
            assign_replicas(&other, 0..50, 3, 11)
        );
    }

    proptest! {
        #[test]
        fn distinct_and_spread_over_racks(
            nodes in proptest::collection::btree_map(0..200i32, proptest::option::of(0..4u8), 1..12),
            rf_seed: usize, start: usize, first in 0..1000i32, count in 1..40i32,
        ) {
            let brokers: Vec<(i32, Option<String>)> = nodes
                .into_iter()
                .map(|(id, rack)| (id, rack.map(|r| format!("rack-{r}"))))
                .collect();
            let rf = rf_seed % brokers.len() + 1;
            let racks = brokers.iter().map(|(_, r)| r).collect::<BTreeSet<_>>().len();
            let assignment = assign_replicas(&brokers, first..first + count, rf, start);
            prop_assert_eq!(assignment.len(), count as usize);
            for replicas in assignment {
                prop_assert_eq!(replicas.len(), rf);
                prop_assert!(distinct(&replicas));
                prop_assert_eq!(rack_count(&brokers, &replicas), rf.min(racks));
            }
        }
    }
}
