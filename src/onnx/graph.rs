//! A small builder for ONNX graphs: nodes get fresh output names, constants become
//! initializers, and the result encodes as `GraphProto` / `ModelProto` (see [`super::proto`]).

use super::proto::Message;

/// ONNX element types (`TensorProto.DataType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Elem {
    Float = 1,
    Int64 = 7,
    Bool = 9,
    Double = 11,
}

/// A dimension of a declared input or output: fixed, or named (the batch size).
#[derive(Clone, Copy, Debug)]
pub enum Dim {
    Fixed(i64),
    Named(&'static str),
}

/// A node attribute.
pub enum Attr {
    Int(i64),
    Str(String),
    Ints(Vec<i64>),
    Floats(Vec<f32>),
    Strs(Vec<String>),
    Graph(Graph),
}

/// The attribute's `AttributeProto.AttributeType` and field number.
impl Attr {
    fn encode(self, name: &str) -> Message {
        let mut m = Message::new();
        m.string(1, name);
        match self {
            Attr::Int(v) => m.int(20, 2).int(3, v),
            Attr::Str(v) => m.int(20, 3).string(4, &v),
            Attr::Graph(g) => m.int(20, 5).message(6, g.encode()),
            Attr::Floats(v) => m.int(20, 6).packed_floats(7, &v),
            Attr::Ints(v) => m.int(20, 7).packed_ints(8, &v),
            Attr::Strs(v) => {
                m.int(20, 8);
                v.iter().for_each(|s| {
                    m.string(9, s);
                });
                &mut m
            }
        };
        m
    }
}

/// A graph being built. Names are prefixed with the graph's own prefix, so a subgraph's names
/// never collide with its parent's (ONNX requires single assignment across nested scopes).
pub struct Graph {
    name: String,
    prefix: String,
    next_id: usize,
    nodes: Vec<Message>,
    initializers: Vec<Message>,
    inputs: Vec<Message>,
    outputs: Vec<Message>,
}

impl Graph {
    pub fn new(name: &str, prefix: &str) -> Self {
        Graph {
            name: name.into(),
            prefix: prefix.into(),
            next_id: 0,
            nodes: Vec::new(),
            initializers: Vec::new(),
            inputs: Vec::new(),
            outputs: Vec::new(),
        }
    }

    fn fresh(&mut self, hint: &str) -> String {
        self.next_id += 1;
        format!("{}{}_{}", self.prefix, hint, self.next_id)
    }

    pub fn input(&mut self, name: &str, elem: Elem, dims: &[Dim]) -> String {
        self.inputs.push(value_info(name, elem, dims));
        name.into()
    }

    pub fn output(&mut self, name: &str, elem: Elem, dims: &[Dim]) {
        self.outputs.push(value_info(name, elem, dims));
    }

    /// A node of the default domain with one output.
    pub fn op(&mut self, op: &str, inputs: &[&str], attrs: Vec<(&str, Attr)>) -> String {
        let output = self.fresh(&op.to_lowercase());
        self.node("", op, inputs, &[&output], attrs);
        output
    }

    /// A node with the given output names.
    pub fn node(&mut self, domain: &str, op: &str, inputs: &[&str], outputs: &[&str], attrs: Vec<(&str, Attr)>) {
        let mut m = Message::new();
        inputs.iter().for_each(|i| {
            m.string(1, i);
        });
        outputs.iter().for_each(|o| {
            m.string(2, o);
        });
        let name = self.fresh(&format!("{op}_node"));
        m.string(3, &name).string(4, op);
        for (name, attr) in attrs {
            m.message(5, attr.encode(name));
        }
        if !domain.is_empty() {
            m.string(7, domain);
        }
        self.nodes.push(m);
    }

    /// A constant tensor of f32 values.
    pub fn floats(&mut self, hint: &str, dims: &[i64], values: &[f32]) -> String {
        let raw: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.constant(hint, Elem::Float, dims, &raw)
    }

    /// A constant tensor of f64 values.
    pub fn doubles(&mut self, hint: &str, dims: &[i64], values: &[f64]) -> String {
        let raw: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.constant(hint, Elem::Double, dims, &raw)
    }

    /// A constant tensor of i64 values.
    pub fn ints(&mut self, hint: &str, dims: &[i64], values: &[i64]) -> String {
        let raw: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.constant(hint, Elem::Int64, dims, &raw)
    }

    /// A constant tensor of booleans.
    pub fn bools(&mut self, hint: &str, dims: &[i64], values: &[bool]) -> String {
        let raw: Vec<u8> = values.iter().map(|&v| u8::from(v)).collect();
        self.constant(hint, Elem::Bool, dims, &raw)
    }

    fn constant(&mut self, hint: &str, elem: Elem, dims: &[i64], raw: &[u8]) -> String {
        debug_assert_eq!(dims.iter().product::<i64>() as usize * elem_size(elem), raw.len());
        let name = self.fresh(hint);
        let mut t = Message::new();
        t.packed_ints(1, dims).int(2, elem as i64).string(8, &name).bytes(9, raw);
        self.initializers.push(t);
        name
    }

    /// `GraphProto`.
    pub fn encode(self) -> Message {
        let mut g = Message::new();
        self.nodes.into_iter().for_each(|n| {
            g.message(1, n);
        });
        g.string(2, &self.name);
        self.initializers.into_iter().for_each(|t| {
            g.message(5, t);
        });
        self.inputs.into_iter().for_each(|v| {
            g.message(11, v);
        });
        self.outputs.into_iter().for_each(|v| {
            g.message(12, v);
        });
        g
    }
}

fn elem_size(elem: Elem) -> usize {
    match elem {
        Elem::Float => 4,
        Elem::Int64 | Elem::Double => 8,
        Elem::Bool => 1,
    }
}

/// `ValueInfoProto` of a tensor.
fn value_info(name: &str, elem: Elem, dims: &[Dim]) -> Message {
    let mut shape = Message::new();
    for dim in dims {
        let mut d = Message::new();
        match dim {
            Dim::Fixed(n) => d.int(1, *n),
            Dim::Named(p) => d.string(2, p),
        };
        shape.message(1, d);
    }
    let mut tensor = Message::new();
    tensor.int(1, elem as i64).message(2, shape);
    let mut type_proto = Message::new();
    type_proto.message(1, tensor);
    let mut v = Message::new();
    v.string(1, name).message(2, type_proto);
    v
}

/// What goes around the graph in `ModelProto`.
pub struct ModelInfo<'a> {
    pub ir_version: i64,
    /// (domain, version) pairs.
    pub opsets: &'a [(&'a str, i64)],
    pub producer_version: &'a str,
    pub doc: &'a str,
    pub metadata: Vec<(&'a str, String)>,
}

/// `ModelProto`, ready to write to a `.onnx` file.
pub fn encode_model(graph: Graph, info: &ModelInfo<'_>) -> Vec<u8> {
    let mut m = Message::new();
    m.int(1, info.ir_version);
    m.string(2, "netsec").string(3, info.producer_version);
    m.string(6, info.doc);
    m.message(7, graph.encode());
    for (domain, version) in info.opsets {
        let mut opset = Message::new();
        opset.string(1, domain).int(2, *version);
        m.message(8, opset);
    }
    for (key, value) in &info.metadata {
        let mut entry = Message::new();
        entry.string(1, key).string(2, value);
        m.message(14, entry);
    }
    m.into_bytes()
}
