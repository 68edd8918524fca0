//! The tree learner: depth-first growth over binned, merged rows with histogram split search.
//!
//! It follows scikit-learn's `DepthFirstTreeBuilder` + `BestSplitter`: a node becomes a leaf
//! when it reaches `max_depth`, has fewer than `min_samples_split` (or `2 *
//! min_samples_leaf`) samples, is pure (impurity <= EPSILON), or has no valid split; otherwise
//! it takes the split of best proxy improvement, even a zero one. Features are visited in a
//! random order per node and ties go to the first visited. With `max_features` below the
//! number of features, features are drawn one by one and constant ones (known from an
//! ancestor, or found now) do not stop the search until one non-constant feature is seen, as
//! scikit-learn does.
//!
//! When every feature is searched, a child's histogram is either built from its rows (the
//! smaller child) or obtained as parent minus sibling (the larger one).

use rand::RngExt;

use super::criterion::{best_split, Scan, Split, Task, EPSILON};
use super::data::Prepared;
use super::hist::{self, Entry, Hist};
use super::seed::Rng;
use super::tree::{Node, Tree};

/// Resolved growth parameters.
#[derive(Clone, Copy, Debug)]
pub struct GrowParams {
    pub task: Task,
    pub max_depth: Option<usize>,
    pub min_samples_split: usize,
    pub min_samples_leaf: usize,
    /// Features drawn per node, `1..=n_features`.
    pub max_features: usize,
}

/// The rows one tree learns from: merged rows with positive weight, their two statistics
/// lanes (see [`super::criterion`]), and their sample counts when weights do not count
/// samples.
#[derive(Default)]
pub struct TreeRows {
    pub rows: Vec<u32>,
    pub vals: Vec<Entry<2>>,
    pub counts: Option<Vec<f64>>,
}

impl TreeRows {
    /// Classification rows: `weights[u]` is merged row `u`'s total weight, `counts[u]` its
    /// number of samples (None when weights are counts).
    pub fn classes(labels: &[u8], weights: &[f64], counts: Option<&[f64]>) -> Self {
        let rows: Vec<u32> = (0..weights.len() as u32).filter(|&u| weights[u as usize] > 0.0).collect();
        let lanes = |u: u32| {
            let (u, w) = (u as usize, weights[u as usize]);
            if labels[u] == 1 {
                [0.0, w]
            } else {
                [w, 0.0]
            }
        };
        TreeRows {
            vals: rows.iter().map(|&u| lanes(u)).collect(),
            counts: counts.map(|c| rows.iter().map(|&u| c[u as usize]).collect()),
            rows,
        }
    }
}

/// Per merged row regression inputs: targets (for node purity) and, optionally, hessians —
/// then leaves take the Newton step `sum(w * target) / sum(w * hessian)` instead of the mean.
#[derive(Clone, Copy)]
pub struct Regression<'a> {
    pub targets: &'a [f64],
    pub hessians: Option<&'a [f64]>,
}

/// A grown tree with what the boosting loops need to reuse the growth.
pub struct Grown {
    pub tree: Tree,
    /// Per node, the last bin going left (0 at leaves): the split on the binned rows.
    pub split_bins: Vec<u8>,
    /// The input rows, grouped by leaf.
    pub rows: Vec<u32>,
    /// Per leaf: node index and its range in `rows`.
    pub leaves: Vec<(usize, usize, usize)>,
}

impl Grown {
    /// The leaf a merged row of the training data reaches: a fixed number of branch-free
    /// steps, leaves looping to themselves.
    pub fn leaf_of(&self, data: &Prepared, row: usize) -> usize {
        let nodes = self.tree.nodes();
        let mut i = 0;
        for _ in 0..self.tree.depth() {
            let node = &nodes[i];
            let right = data.column(usize::from(node.feature))[row] > self.split_bins[i];
            i = node.children[usize::from(right)] as usize;
        }
        i
    }
}

/// Buffers reused from tree to tree of one fit; nothing in them carries over.
#[derive(Default)]
pub struct Workspace {
    two: Option<Buffers<2>>,
    three: Option<Buffers<3>>,
}

struct Buffers<const L: usize> {
    pool: Vec<Hist<L>>,
    /// Cells of the feature packs.
    scratch: Hist<L>,
    spill_rows: Vec<u32>,
    spill_vals: Vec<Entry<L>>,
}

impl<const L: usize> Buffers<L> {
    fn new(data: &Prepared) -> Self {
        Buffers { pool: Vec::new(), scratch: hist::pack_scratch(data), spill_rows: Vec::new(), spill_vals: Vec::new() }
    }
}

/// Grows one tree. A count lane is added when weights are not sample counts: the leaf rules
/// count samples, and histogram subtraction of non-integer weights could leave rounding
/// residue in an empty bin.
pub fn grow_tree(
    params: &GrowParams,
    data: &Prepared,
    input: TreeRows,
    regression: Option<Regression<'_>>,
    rng: &mut Rng,
    ws: &mut Workspace,
) -> Grown {
    let TreeRows { rows, vals, counts } = input;
    match counts {
        Some(counts) => {
            let vals = vals.iter().zip(&counts).map(|(v, &c)| [v[0], v[1], c]).collect();
            let buffers = ws.three.get_or_insert_with(|| Buffers::new(data));
            Builder::new(params, data, rows, vals, regression, rng, buffers).run()
        }
        None => {
            let buffers = ws.two.get_or_insert_with(|| Buffers::new(data));
            Builder::new(params, data, rows, vals, regression, rng, buffers).run()
        }
    }
}

/// Features known to be constant in a node (and so in its descendants); inline for up to
/// 128 features, as every node copies its parent's.
#[derive(Clone)]
enum FeatureSet {
    Small(u128),
    Large(Vec<u64>),
}

impl FeatureSet {
    fn new(n: usize) -> Self {
        if n <= 128 {
            FeatureSet::Small(0)
        } else {
            FeatureSet::Large(vec![0; n.div_ceil(64)])
        }
    }
    fn contains(&self, f: usize) -> bool {
        match self {
            FeatureSet::Small(bits) => bits >> f & 1 == 1,
            FeatureSet::Large(words) => words[f / 64] >> (f % 64) & 1 == 1,
        }
    }
    fn insert(&mut self, f: usize) {
        match self {
            FeatureSet::Small(bits) => *bits |= 1 << f,
            FeatureSet::Large(words) => words[f / 64] |= 1 << (f % 64),
        }
    }
}

/// A node waiting to be grown.
struct Frame<const L: usize> {
    start: usize,
    end: usize,
    depth: usize,
    /// Parent node and which child this is.
    parent: Option<(usize, usize)>,
    total: Entry<L>,
    /// Whether scikit-learn's leaf rules allow a split search.
    open: bool,
    /// The node's histogram over all features when the parent provided it.
    hist: Option<Hist<L>>,
    constants: FeatureSet,
}

struct Builder<'a, 'r, const L: usize> {
    p: GrowParams,
    data: &'a Prepared,
    regression: Option<Regression<'a>>,
    /// Every node searches every feature: use the subtraction trick.
    full: bool,
    rows: Vec<u32>,
    vals: Vec<Entry<L>>,
    nodes: Vec<Node>,
    values: Vec<f64>,
    split_bins: Vec<u8>,
    leaves: Vec<(usize, usize, usize)>,
    depth: u32,
    /// Feature visiting order, reshuffled per node.
    order: Vec<usize>,
    /// Scratch list of features to build histograms for.
    feats: Vec<usize>,
    rng: &'r mut Rng,
    buf: &'r mut Buffers<L>,
}

impl<'a, 'r, const L: usize> Builder<'a, 'r, L> {
    fn new(
        params: &GrowParams,
        data: &'a Prepared,
        rows: Vec<u32>,
        vals: Vec<Entry<L>>,
        regression: Option<Regression<'a>>,
        rng: &'r mut Rng,
        buf: &'r mut Buffers<L>,
    ) -> Self {
        Builder {
            p: *params,
            data,
            regression,
            full: params.max_features >= data.n_features(),
            rows,
            vals,
            nodes: Vec::new(),
            values: Vec::new(),
            split_bins: Vec::new(),
            leaves: Vec::new(),
            depth: 0,
            order: (0..data.n_features()).collect(),
            feats: Vec::new(),
            rng,
            buf,
        }
    }

    fn run(mut self) -> Grown {
        let mut total = [0.0; L];
        for v in &self.vals {
            total = std::array::from_fn(|l| total[l] + v[l]);
        }
        let mut root = Frame {
            start: 0,
            end: self.rows.len(),
            depth: 0,
            parent: None,
            total,
            open: false,
            hist: None,
            constants: FeatureSet::new(self.data.n_features()),
        };
        root.open = self.splittable(&root);
        let mut stack = vec![root];
        while let Some(frame) = stack.pop() {
            let id = self.nodes.len();
            self.nodes.push(Node::leaf(id));
            self.values.push(self.mean(&frame.total));
            self.split_bins.push(0);
            self.depth = self.depth.max(frame.depth as u32);
            if let Some((parent, side)) = frame.parent {
                self.nodes[parent].children[side] = id as u32;
            }
            self.grow_node(id, frame, &mut stack);
        }
        Grown {
            tree: Tree::new(self.nodes, self.values, self.depth),
            split_bins: self.split_bins,
            rows: self.rows,
            leaves: self.leaves,
        }
    }

    /// Class-1 probability or mean target of a node.
    fn mean(&self, total: &Entry<L>) -> f64 {
        total[1] / self.p.task.weight(total)
    }

    /// scikit-learn's leaf rules before search: depth, sample counts, purity.
    fn splittable(&self, frame: &Frame<L>) -> bool {
        let count = self.p.task.count(&frame.total);
        let msl = self.p.min_samples_leaf as f64;
        self.p.max_depth.is_none_or(|d| frame.depth < d)
            && count >= self.p.min_samples_split as f64
            && count >= 2.0 * msl
            && self.p.task.impurity(&frame.total, self.sum_sq(frame)) > EPSILON
    }

    /// Weighted sum of squared targets of a node (regression only).
    fn sum_sq(&self, frame: &Frame<L>) -> f64 {
        let Some(reg) = self.regression else { return 0.0 };
        let (rows, vals) = (&self.rows[frame.start..frame.end], &self.vals[frame.start..frame.end]);
        rows.iter().zip(vals).map(|(&u, v)| v[1] * reg.targets[u as usize]).sum()
    }

    fn grow_node(&mut self, id: usize, mut frame: Frame<L>, stack: &mut Vec<Frame<L>>) {
        if !frame.open {
            self.recycle(frame.hist.take());
            return self.make_leaf(id, &frame);
        }
        let mut hist = frame.hist.take().unwrap_or_else(|| self.buffer());
        let split =
            if self.full { self.search_all(&mut frame, &mut hist) } else { self.search_sampled(&mut frame, &mut hist) };
        match split {
            None => {
                self.recycle(Some(hist));
                self.make_leaf(id, &frame);
            }
            Some(s) => self.split(id, frame, s, hist, stack),
        }
    }

    fn buffer(&mut self) -> Hist<L> {
        self.buf.pool.pop().unwrap_or_else(|| hist::zeroed(self.data))
    }

    fn recycle(&mut self, hist: Option<Hist<L>>) {
        self.buf.pool.extend(hist);
    }

    /// Builds the histograms of `feats` for a node's rows.
    fn fill(&mut self, frame: &Frame<L>, feats: &[usize], hist: &mut Hist<L>) {
        let (rows, vals) = (&self.rows[frame.start..frame.end], &self.vals[frame.start..frame.end]);
        hist::accumulate(self.data, feats, rows, vals, hist, &mut self.buf.scratch);
    }

    fn live(&self, constants: &FeatureSet) -> Vec<usize> {
        (0..self.data.n_features()).filter(|&f| !constants.contains(f)).collect()
    }

    /// Searches every feature not known constant; the root builds its histogram here,
    /// other nodes were handed theirs by the parent. Marks constant features in `frame`.
    fn search_all(&mut self, frame: &mut Frame<L>, hist: &mut Hist<L>) -> Option<Split<L>> {
        if frame.parent.is_none() {
            let live = self.live(&frame.constants);
            self.fill(frame, &live, hist);
        }
        let n = self.order.len();
        for i in 0..n.saturating_sub(1) {
            let j = self.rng.random_range(i..n);
            self.order.swap(i, j);
        }
        let mut best = None;
        for k in 0..n {
            let f = self.order[k];
            if !frame.constants.contains(f) {
                self.consider(frame, f, hist, &mut best);
            }
        }
        best
    }

    /// Scans feature `f` and keeps its split if strictly better; returns whether the
    /// feature can vary in this node.
    fn consider(&self, frame: &mut Frame<L>, f: usize, hist: &Hist<L>, best: &mut Option<Split<L>>) -> bool {
        let bins = hist::bins(self.data, hist, f);
        match best_split(self.p.task, f, bins, &frame.total, self.p.min_samples_leaf as f64) {
            Scan::Constant => {
                frame.constants.insert(f);
                return false;
            }
            Scan::NoSplit => {}
            Scan::Best(s) => {
                if best.is_none_or(|b| s.proxy > b.proxy) {
                    *best = Some(s);
                }
            }
        }
        true
    }

    /// Draws features one by one (scikit-learn's rule for `max_features < n_features`).
    fn search_sampled(&mut self, frame: &mut Frame<L>, hist: &mut Hist<L>) -> Option<Split<L>> {
        let nf = self.order.len();
        let mut best = None;
        let mut drawn = 0;
        let mut seen_variable = false;
        while drawn < nf && (drawn < self.p.max_features || !seen_variable) {
            // The first batch is drawn together so its histograms share one pass.
            let batch = if drawn == 0 { self.p.max_features } else { 1 };
            for i in drawn..drawn + batch {
                let j = self.rng.random_range(i..nf);
                self.order.swap(i, j);
            }
            let picked = drawn..drawn + batch;
            drawn += batch;
            let mut feats = std::mem::take(&mut self.feats);
            feats.clear();
            feats.extend(self.order[picked.clone()].iter().filter(|&&f| !frame.constants.contains(f)));
            feats.sort_unstable();
            self.fill(frame, &feats, hist);
            self.feats = feats;
            for k in picked {
                let f = self.order[k];
                if !frame.constants.contains(f) {
                    seen_variable |= self.consider(frame, f, hist, &mut best);
                }
            }
        }
        best
    }

    fn make_leaf(&mut self, id: usize, frame: &Frame<L>) {
        if let Some(h) = self.regression.and_then(|r| r.hessians) {
            self.values[id] = self.newton(frame, h);
        }
        self.leaves.push((id, frame.start, frame.end));
    }

    /// scikit-learn's one Newton step for a log-loss leaf, zero when the hessian vanishes.
    fn newton(&self, frame: &Frame<L>, hessians: &[f64]) -> f64 {
        let (mut num, mut den) = (0.0, 0.0);
        for k in frame.start..frame.end {
            num += self.vals[k][1];
            den += self.vals[k][0] * hessians[self.rows[k] as usize];
        }
        if den.abs() < 1e-150 {
            0.0
        } else {
            num / den
        }
    }

    fn split(&mut self, id: usize, frame: Frame<L>, s: Split<L>, hist: Hist<L>, stack: &mut Vec<Frame<L>>) {
        let threshold = self.data.feature_bins(s.feature).threshold(s.bin, s.right_bin);
        self.nodes[id] = Node { feature: s.feature as u16, threshold, children: [0, 0] };
        self.split_bins[id] = s.bin as u8;
        let mid = partition(
            self.data.column(s.feature),
            s.bin as u8,
            &mut self.rows[frame.start..frame.end],
            &mut self.vals[frame.start..frame.end],
            self.buf,
        ) + frame.start;
        let child = |start, end, side, total| Frame {
            start,
            end,
            depth: frame.depth + 1,
            parent: Some((id, side)),
            total,
            open: false,
            hist: None,
            constants: frame.constants.clone(),
        };
        let mut left = child(frame.start, mid, 0, s.left);
        let mut right = child(mid, frame.end, 1, std::array::from_fn(|l| frame.total[l] - s.left[l]));
        left.open = self.splittable(&left);
        right.open = self.splittable(&right);
        if self.full {
            self.child_histograms(&mut left, &mut right, hist);
        } else {
            self.recycle(Some(hist));
        }
        stack.push(right);
        stack.push(left);
    }

    /// Gives the children that will search splits their histograms: the smaller child's from
    /// its rows, the larger's as parent minus smaller.
    fn child_histograms(&mut self, left: &mut Frame<L>, right: &mut Frame<L>, mut parent: Hist<L>) {
        let (small, large) =
            if left.end - left.start <= right.end - right.start { (left, right) } else { (right, left) };
        if !small.open && !large.open {
            return self.recycle(Some(parent));
        }
        let live = self.live(&small.constants);
        let mut own = self.buffer();
        self.fill(small, &live, &mut own);
        if large.open {
            hist::subtract(self.data, &live, &mut parent, &own);
            large.hist = Some(parent);
        } else {
            self.recycle(Some(parent));
        }
        if small.open {
            small.hist = Some(own);
        } else {
            self.recycle(Some(own));
        }
    }
}

/// Stable partition of a node's rows (and their statistics) by `column[row] <= bin`; returns
/// the number going left. Branch-free (each row is written to both sides and only its own
/// side advances): which side a row takes is data, and mispredicted branches cost more than
/// the extra stores.
fn partition<const L: usize>(
    column: &[u8],
    bin: u8,
    rows: &mut [u32],
    vals: &mut [Entry<L>],
    buf: &mut Buffers<L>,
) -> usize {
    let n = rows.len();
    buf.spill_rows.resize(n + 1, 0);
    buf.spill_vals.resize(n + 1, [0.0; L]);
    let (spill_rows, spill_vals) = (&mut buf.spill_rows[..=n], &mut buf.spill_vals[..=n]);
    let (mut l, mut r) = (0, 0);
    for k in 0..n {
        let (row, val) = (rows[k], vals[k]);
        let left = usize::from(column[row as usize] <= bin);
        rows[l] = row;
        vals[l] = val;
        spill_rows[r] = row;
        spill_vals[r] = val;
        l += left;
        r += 1 - left;
    }
    rows[l..].copy_from_slice(&spill_rows[..r]);
    vals[l..].copy_from_slice(&spill_vals[..r]);
    l
}
