//! The dependency graph of a playbook's resources, and the order they are applied in.
//!
//! The edges are `after:` and what each kind says it needs ([`Resource::needs`]): a directory
//! before what is inside it, a user or group before what it owns, an `apt` resource before what
//! uses its packages, an `apt_repository` before the installs written after it, what a command's
//! `on_change:` names before the command. The order is the playbook's own, each resource moved
//! only as far as the edges require (a stable topological sort: Kahn's algorithm, always taking
//! the earliest ready resource). A cycle is reported with the ids around it.
//!
//! [`Resource::needs`]: crate::kinds::resource::Resource::needs

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap};
use std::fmt;
use std::path::Path;

use crate::kinds::AnyResource;
use crate::kinds::resource::{Need, Provide, ResourceId};

/// One resource of the graph.
#[derive(Debug)]
pub struct Node<'a> {
    pub id: &'a ResourceId,
    pub resource: &'a AnyResource,
    /// The nodes its `after:` names, by index.
    pub after: Vec<usize>,
    /// Its ordering facts: [`AnyResource::needs`], or at apply time [`AnyResource::needs_now`].
    pub needs: Vec<Need>,
}

/// Resources that must each come before the next: no order can satisfy them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cycle {
    /// The ids around the cycle, in the order they would have to be applied (the first comes
    /// again after the last).
    pub ids: Vec<ResourceId>,
    /// The index of the first of them, for where to report it.
    pub first: usize,
}

impl fmt::Display for Cycle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<String> = self.ids.iter().chain(self.ids.first()).map(ResourceId::to_string).collect();
        write!(f, "dependency cycle: {}", names.join(" -> "))
    }
}

/// The apply order of `nodes`, as indices: the given order, moved only as far as the edges
/// require.
pub fn order(nodes: &[Node]) -> Result<Vec<usize>, Cycle> {
    let before = edges(nodes);
    sort(&before).map_err(|stuck| {
        let cycle = find_cycle(&before, &stuck);
        Cycle { ids: cycle.iter().map(|&i| nodes[i].id.clone()).collect(), first: cycle[0] }
    })
}

/// `before[i]`: the nodes that must come before node `i` (apply.rs runs what no edge joins at
/// the same time).
pub fn edges(nodes: &[Node]) -> Vec<BTreeSet<usize>> {
    let index: HashMap<&ResourceId, usize> = nodes.iter().enumerate().rev().map(|(i, n)| (n.id, i)).collect();
    let mut dirs: HashMap<&Path, usize> = HashMap::new();
    let mut packages: Vec<(String, usize)> = Vec::new();
    let mut sources: Vec<usize> = Vec::new();
    let provides: Vec<Vec<Provide>> = nodes.iter().map(|n| n.resource.provides()).collect();
    for (i, provided) in provides.iter().enumerate() {
        for provide in provided {
            match provide {
                Provide::Directory(path) => {
                    dirs.entry(path.as_path()).or_insert(i);
                }
                Provide::Package(name) => packages.push((name.clone(), i)),
                Provide::AptSource => sources.push(i),
            }
        }
    }
    let mut before: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); nodes.len()];
    for (i, node) in nodes.iter().enumerate() {
        before[i].extend(&node.after);
        for need in &node.needs {
            match need {
                Need::User(_) | Need::Group(_) => before[i].extend(need.id().and_then(|id| index.get(&id))),
                Need::Package(names) => {
                    before[i].extend(packages.iter().filter(|(p, _)| names.contains(&p.as_str())).map(|(_, j)| j))
                }
                Need::Inside(path) => before[i].extend(path.ancestors().skip(1).filter_map(|p| dirs.get(p))),
                Need::Changed(id) => before[i].extend(index.get(id)),
                Need::AptSources => before[i].extend(sources.iter().filter(|&&j| j < i)),
                Need::Directory(_) => {}
            }
        }
        before[i].remove(&i);
    }
    before
}

/// Kahn's algorithm, always taking the earliest ready node; the nodes left waiting on a cycle
/// (how many they wait for) when there is one.
fn sort(before: &[BTreeSet<usize>]) -> Result<Vec<usize>, Vec<usize>> {
    let mut waiting: Vec<usize> = before.iter().map(BTreeSet::len).collect();
    let mut after_of: Vec<Vec<usize>> = vec![Vec::new(); before.len()];
    for (i, deps) in before.iter().enumerate() {
        for &j in deps {
            after_of[j].push(i);
        }
    }
    let mut ready: BinaryHeap<Reverse<usize>> = (0..before.len()).filter(|&i| waiting[i] == 0).map(Reverse).collect();
    let mut order = Vec::with_capacity(before.len());
    while let Some(Reverse(i)) = ready.pop() {
        order.push(i);
        for &k in &after_of[i] {
            waiting[k] -= 1;
            if waiting[k] == 0 {
                ready.push(Reverse(k));
            }
        }
    }
    if order.len() < before.len() { Err(waiting) } else { Ok(order) }
}

/// A cycle among the nodes that never became ready, following "must come before" edges.
fn find_cycle(before: &[BTreeSet<usize>], waiting: &[usize]) -> Vec<usize> {
    let start = (0..waiting.len()).find(|&i| waiting[i] > 0).expect("a stuck node");
    let mut path = vec![start];
    let mut current = start;
    loop {
        let next = *before[current].iter().find(|&&j| waiting[j] > 0).expect("a stuck node waits on a stuck node");
        if let Some(pos) = path.iter().position(|&p| p == next) {
            let mut cycle = path[pos..].to_vec();
            cycle.reverse();
            return cycle;
        }
        path.push(next);
        current = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sorted(before: &[&[usize]]) -> Result<Vec<usize>, Vec<usize>> {
        let before: Vec<BTreeSet<usize>> = before.iter().map(|b| b.iter().copied().collect()).collect();
        sort(&before)
    }

    #[test]
    fn keeps_the_given_order_where_it_can() {
        assert_eq!(sorted(&[&[], &[], &[]]), Ok(vec![0, 1, 2]));
        // 0 must wait for 2; 1 is free and keeps its place before 0.
        assert_eq!(sorted(&[&[2], &[], &[]]), Ok(vec![1, 2, 0]));
    }

    #[test]
    fn finds_the_cycle() {
        let before: Vec<BTreeSet<usize>> = vec![[1].into(), [0].into(), BTreeSet::new()];
        let stuck = sort(&before).unwrap_err();
        assert_eq!(find_cycle(&before, &stuck), vec![1, 0]);
    }
}
