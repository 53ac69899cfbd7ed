//! Property-style fuzzing of the three roles' HTTP APIs, driven by their
//! OpenAPI documents (docs/openapi/*.json, served at GET /openapi.json).
//!
//! For every operation of every document, requests are built from the
//! schema and then mutated: valid bodies, a field removed, a field replaced
//! by a value of another JSON type (strings, booleans, null, huge and
//! negative integers, floats with many decimals, 1e308, nested objects and
//! arrays, long and unicode strings), extra fields, duplicate keys, invalid
//! JSON, empty and oversized bodies, wrong or missing content types, path
//! and query parameters that are random strings (percent-encoded), huge
//! numbers, UUID-ish and non-UUID values, odd Idempotency-Key, X-Request-ID
//! and Authorization headers, and now and then another HTTP method. Every
//! answer must be below 500, a 4xx must carry the `{"error","code"}`
//! envelope, every status must be one the document lists for the
//! operation, a 2xx body must match the documented schema, and every role
//! must still answer GET /health at the end.
//!
//! The generator is seeded: a failure prints the seed, and
//! `DOP_FUZZ_SEED=<seed> cargo nextest run -E 'test(/fuzz/)'` replays the
//! same requests (`DOP_FUZZ_ONLY="order POST /orders"` keeps one operation,
//! `DOP_FUZZ_CASES=<n>` changes the number of requests per operation).
//! Requests go over raw TCP so that any bytes a client may send can be sent.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt,
    net::SocketAddr,
    time::Duration,
};

use dop::roles::Role;
use rand::{rngs::StdRng, seq::IndexedRandom, Rng, SeedableRng};
use serde_json::{json, Map, Value};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use crate::harness::{product_id, Opts, Stack};

const MAX_ID: i64 = 9_007_199_254_740_991;
/// Requests per operation of a role's own API, unless DOP_FUZZ_CASES says.
const CASES: usize = 300;
/// Requests per common operation (/health, /ready, /metrics, /openapi.json).
const COMMON_CASES: usize = 40;
/// Requests in flight at once.
const PARALLEL: usize = 8;
const TOKEN: &str = "test-token";
const METHODS: [&str; 5] = ["GET", "POST", "PUT", "DELETE", "PATCH"];

// ---------------------------------------------------------------------------
// The documents.

fn doc_on_disk(role: Role) -> Value {
    let path = format!(
        "{}/docs/openapi/{}.json",
        env!("CARGO_MANIFEST_DIR"),
        role.as_str()
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path} is not JSON: {e}"))
}

/// Follows `$ref`s inside `doc`.
fn resolve<'a>(doc: &'a Value, mut v: &'a Value) -> &'a Value {
    while let Some(r) = v.get("$ref").and_then(Value::as_str) {
        let pointer = r.strip_prefix('#').expect("local $ref");
        v = doc
            .pointer(pointer)
            .unwrap_or_else(|| panic!("dangling $ref {r}"));
    }
    v
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Loc {
    Path,
    Query,
    Header,
}

#[derive(Clone, Debug)]
struct Param {
    name: String,
    loc: Loc,
    required: bool,
    schema: Value,
}

#[derive(Clone, Debug)]
struct Operation {
    role: Role,
    method: String,
    template: String,
    params: Vec<Param>,
    /// The schema of the JSON request body, when there is one.
    body: Option<Value>,
    secured: bool,
    /// Documented statuses and their JSON schemas (None: not JSON).
    responses: Vec<(u16, Option<Value>)>,
}

impl Operation {
    fn name(&self) -> String {
        format!("{} {} {}", self.role, self.method, self.template)
    }
    fn is_common(&self) -> bool {
        ["/health", "/ready", "/metrics", "/openapi.json"].contains(&self.template.as_str())
    }
    fn statuses(&self) -> BTreeSet<u16> {
        self.responses.iter().map(|(s, _)| *s).collect()
    }
}

fn operations(role: Role, doc: &Value) -> Vec<Operation> {
    let mut ops = Vec::new();
    for (template, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("path item") {
            let params = op["parameters"]
                .as_array()
                .map(|ps| {
                    ps.iter()
                        .map(|p| {
                            let p = resolve(doc, p);
                            Param {
                                name: p["name"].as_str().unwrap().to_string(),
                                loc: match p["in"].as_str().unwrap() {
                                    "path" => Loc::Path,
                                    "query" => Loc::Query,
                                    "header" => Loc::Header,
                                    other => panic!("parameter in {other}"),
                                },
                                required: p["required"].as_bool().unwrap_or(false),
                                schema: resolve(doc, &p["schema"]).clone(),
                            }
                        })
                        .collect()
                })
                .unwrap_or_default();
            let body = op
                .pointer("/requestBody/content/application~1json/schema")
                .map(|s| resolve(doc, s).clone());
            let responses = op["responses"]
                .as_object()
                .expect("responses")
                .iter()
                .map(|(status, r)| {
                    let r = resolve(doc, r);
                    let schema = r
                        .pointer("/content/application~1json/schema")
                        .map(|s| resolve(doc, s).clone());
                    (status.parse::<u16>().expect("numeric status"), schema)
                })
                .collect();
            ops.push(Operation {
                role,
                method: method.to_ascii_uppercase(),
                template: template.clone(),
                params,
                body,
                secured: op.get("security").is_some(),
                responses,
            });
        }
    }
    ops
}

// ---------------------------------------------------------------------------
// Checking a JSON value against a schema (the subset the documents use).

fn validate(doc: &Value, schema: &Value, v: &Value, at: &str) -> Result<(), String> {
    let s = resolve(doc, schema);
    if v.is_null() && s["nullable"].as_bool() == Some(true) {
        return Ok(());
    }
    if let Some(all) = s["allOf"].as_array() {
        for sub in all {
            validate(doc, sub, v, at)?;
        }
        return Ok(());
    }
    if let Some(one) = s["oneOf"].as_array().or(s["anyOf"].as_array()) {
        return one
            .iter()
            .find_map(|sub| validate(doc, sub, v, at).ok())
            .ok_or_else(|| format!("{at}: {v} matches no alternative"));
    }
    if let Some(e) = s["enum"].as_array() {
        if !e.contains(v) {
            return Err(format!(
                "{at}: {v} is not one of {}",
                Value::from(e.clone())
            ));
        }
    }
    let ok = match s["type"].as_str() {
        None => true,
        Some("object") => {
            let Some(o) = v.as_object() else {
                return Err(format!("{at}: {v} is not an object"));
            };
            for r in s["required"].as_array().into_iter().flatten() {
                let r = r.as_str().unwrap();
                if !o.contains_key(r) {
                    return Err(format!("{at}: field {r} is missing"));
                }
            }
            if let Some(props) = s["properties"].as_object() {
                for (k, sub) in props {
                    if let Some(fv) = o.get(k) {
                        validate(doc, sub, fv, &format!("{at}.{k}"))?;
                    }
                }
            }
            true
        }
        Some("array") => {
            let Some(a) = v.as_array() else {
                return Err(format!("{at}: {v} is not an array"));
            };
            for (i, item) in a.iter().enumerate() {
                validate(doc, &s["items"], item, &format!("{at}[{i}]"))?;
            }
            true
        }
        Some("string") => match v.as_str() {
            None => false,
            Some(t) => {
                let chars = t.chars().count() as u64;
                s["minLength"].as_u64().is_none_or(|m| chars >= m)
                    && s["maxLength"].as_u64().is_none_or(|m| chars <= m)
                    && match s["format"].as_str() {
                        Some("uuid") => uuid::Uuid::try_parse(t).is_ok(),
                        Some("date-time") => chrono::DateTime::parse_from_rfc3339(t).is_ok(),
                        _ => true,
                    }
            }
        },
        Some("integer") => v.is_i64() || v.is_u64(),
        Some("number") => v.is_number(),
        Some("boolean") => v.is_boolean(),
        Some(other) => return Err(format!("{at}: schema type {other} unknown to the checker")),
    };
    if !ok {
        return Err(format!("{at}: {v} is not a {}", s["type"]));
    }
    if let Some(n) = v.as_f64() {
        if s["minimum"].as_f64().is_some_and(|m| n < m)
            || s["maximum"].as_f64().is_some_and(|m| n > m)
        {
            return Err(format!("{at}: {v} is out of the documented range"));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Values: valid ones from a schema, and the odd ones a client may send.

/// A JSON number written as given (a float with 30 decimals stays so).
fn raw(text: &str) -> Value {
    Value::String(format!("\u{0}RAW:{text}\u{0}"))
}

/// The JSON text of a value, with `raw` numbers spliced in.
fn render(v: &Value) -> String {
    let mut s = v.to_string();
    while let Some(start) = s.find("\"\\u0000RAW:") {
        let end = start + s[start..].find("\\u0000\"").expect("raw end") + 7;
        let inner = s[start + 11..end - 7].to_string();
        s.replace_range(start..end, &inner);
    }
    s
}

struct Known {
    uuids: Vec<String>,
    products: Vec<i64>,
    users: Vec<i64>,
    keys: Vec<String>,
}

fn pick<'a, T>(rng: &mut StdRng, xs: &'a [T]) -> &'a T {
    xs.choose(rng).expect("non-empty")
}

fn random_uuid(rng: &mut StdRng) -> String {
    uuid::Builder::from_random_bytes(rng.random())
        .into_uuid()
        .to_string()
}

fn random_text(rng: &mut StdRng, max: usize) -> String {
    const ALPHABET: &[char] = &[
        'a', 'Z', '0', '9', '-', '_', '.', ' ', '/', '?', '#', '&', '=', '%', '+', '"', '\'', '\\',
        '{', '}', '[', ']', '<', '>', ':', ';', ',', '|', '~', '`', '!', '@', '$', '^', '*', '(',
        ')', 'é', 'ß', 'Ω', '中', '文', '🎉', '\u{202e}', '\u{0}', '\n', '\t', '\u{ffff}',
    ];
    let n = rng.random_range(0..=max);
    (0..n).map(|_| *pick(rng, ALPHABET)).collect()
}

/// A valid value for `schema`; `name` steers ids to known rows now and then.
fn gen_valid(doc: &Value, schema: &Value, name: &str, known: &Known, rng: &mut StdRng) -> Value {
    let s = resolve(doc, schema);
    if let Some(alts) = s["oneOf"].as_array().or(s["anyOf"].as_array()) {
        return gen_valid(doc, pick(rng, alts), name, known, rng);
    }
    if let Some(all) = s["allOf"].as_array() {
        return gen_valid(doc, &all[0], name, known, rng);
    }
    if let Some(e) = s["enum"].as_array() {
        return pick(rng, e).clone();
    }
    match s["type"].as_str().unwrap_or("object") {
        "integer" => {
            let min = s["minimum"].as_i64().unwrap_or(i64::MIN);
            let max = s["maximum"].as_i64().unwrap_or(i64::MAX);
            let n = match (name, rng.random_range(0..10)) {
                ("product_id", 0..=4) => *pick(rng, &known.products),
                ("user_id", 0..=4) => *pick(rng, &known.users),
                (_, 5) => min,
                (_, 6) => max,
                (_, 7) => rng.random_range(min..=max),
                _ => rng.random_range(min..=max.min(min.saturating_add(1000))),
            };
            json!(n)
        }
        "number" => {
            // Amounts: whole cents, greater than 0.
            let cents: u64 = match rng.random_range(0..4) {
                0 => 1,
                1 => 999_999_999_999,
                _ => rng.random_range(1..1_000_000),
            };
            raw(&format!("{}.{:02}", cents / 100, cents % 100))
        }
        "string" => match (s["format"].as_str(), name) {
            (Some("uuid"), _) => {
                if rng.random_bool(0.6) {
                    Value::String(pick(rng, &known.uuids).clone())
                } else {
                    Value::String(random_uuid(rng))
                }
            }
            (_, "Idempotency-Key") => Value::String(pick(rng, &known.keys).clone()),
            (_, "X-Request-ID") => Value::String(format!("fuzz-{}", rng.random::<u32>())),
            _ if s["pattern"].is_string() => {
                let cents: u64 = rng.random_range(1..1_000_000);
                Value::String(format!("{}.{:02}", cents / 100, cents % 100))
            }
            _ => Value::String(random_text(rng, 12)),
        },
        "boolean" => Value::Bool(rng.random()),
        "array" => Value::Array(
            (0..rng.random_range(0..3))
                .map(|_| gen_valid(doc, &s["items"], name, known, rng))
                .collect(),
        ),
        _ => {
            let mut o = Map::new();
            let required: Vec<&str> = s["required"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            for (k, sub) in s["properties"].as_object().into_iter().flatten() {
                if required.contains(&k.as_str()) || rng.random_bool(0.5) {
                    o.insert(k.clone(), gen_valid(doc, sub, k, known, rng));
                }
            }
            Value::Object(o)
        }
    }
}

/// A value of any JSON type, chosen to break parsers and range checks.
fn weird(rng: &mut StdRng) -> Value {
    const NUMBERS: &[&str] = &[
        "0",
        "-1",
        "1",
        "-0",
        "1.0",
        "0.00",
        "0.01",
        "-0.01",
        "1.005",
        "199.999",
        "0.1234567890123456789012345678901234567890",
        "12345678901.23",
        "9999999999.99",
        "9999999999.995",
        "10000000000",
        "9007199254740991",
        "9007199254740992",
        "9223372036854775807",
        "9223372036854775808",
        "-9223372036854775808",
        "-9223372036854775809",
        "18446744073709551615",
        "18446744073709551616",
        "99999999999999999999999999999999999999",
        "2147483647",
        "2147483648",
        "1000000000",
        "1000000001",
        "1e308",
        "-1e308",
        "1e309",
        "1e-308",
        "4.9e-324",
        "1E2",
        "1e+2",
        "1.5e1",
        "79228162514264337593543950335",
        "79228162514264337593543950336",
    ];
    const STRINGS: &[&str] = &[
        "",
        " ",
        "1",
        "-1",
        "0",
        "12.30",
        " 12.30 ",
        "1e3",
        "1e-2",
        "1e99999999999",
        "1e-99999999999",
        "1e28",
        "1e29",
        "1E-28",
        "0x10",
        "+5",
        ".5",
        "5.",
        "1_000",
        "NaN",
        "Infinity",
        "-Infinity",
        "null",
        "true",
        "ünïcødé 🎉 中文",
        "\u{0}",
        "\u{202e}1",
        "'; DROP TABLE orders; --",
        "../../etc/passwd",
        "%00",
        "79228162514264337593543950336",
        "00000000-0000-0000-0000-000000000000",
    ];
    match rng.random_range(0..12) {
        0..=2 => raw(pick::<&str>(rng, NUMBERS)),
        3..=4 => Value::String(pick(rng, STRINGS).to_string()),
        5 => Value::String(random_text(rng, 40)),
        6 => Value::String("x".repeat(rng.random_range(1000..20_000))),
        7 => json!(rng.random::<bool>()),
        8 => Value::Null,
        9 => json!({"a": {"b": [1, 2, {"c": null}]}, "user_id": 1}),
        10 => json!([1, "two", 3.5, null, [], {}]),
        _ => pick(
            rng,
            &[
                json!({}),
                json!([]),
                json!([[[[[]]]]]),
                json!({"$ref": "#/x"}),
            ],
        )
        .clone(),
    }
}

/// A string for a path, query or header parameter that is not (always) valid.
fn weird_text(rng: &mut StdRng, known: &Known) -> String {
    match rng.random_range(0..16) {
        0 => String::new(),
        1 => "0".into(),
        2 => "-1".into(),
        3 => pick(
            rng,
            &[
                "9007199254740992",
                "99999999999999999999999",
                "1e3",
                "1.5",
                "+1",
                " 1",
                "0x1F",
            ],
        )
        .to_string(),
        4 => random_uuid(rng).to_uppercase(),
        5 => random_uuid(rng).replace('-', ""),
        6 => format!("{{{}}}", random_uuid(rng)),
        7 => format!("urn:uuid:{}", random_uuid(rng)),
        8 => {
            let mut u = pick(rng, &known.uuids).clone();
            u.pop();
            u
        }
        9 => format!("{}0", pick(rng, &known.uuids)),
        10 => "x".repeat(rng.random_range(100..5000)),
        11 => pick(
            rng,
            &[
                "..",
                ".",
                "a/b",
                "null",
                "undefined",
                "NaN",
                "true",
                "[]",
                "{}",
            ],
        )
        .to_string(),
        12 => "ünïcødé 🎉".into(),
        13 => pick(rng, &["in_progress", "Failed", "COMPLETED ", "IN PROGRESS"]).to_string(),
        _ => random_text(rng, 30),
    }
}

fn pct(s: &str) -> String {
    // Unreserved characters stay; everything else is %XX of its UTF-8 bytes.
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Percent-encodings that decode to invalid UTF-8 or control characters.
const BAD_PCT: &[&str] = &[
    "%FF",
    "%C3%28",
    "%E2%82",
    "%00",
    "%ED%A0%80",
    "%zz",
    "%",
    "%2F",
    "%25",
];

// ---------------------------------------------------------------------------
// Requests.

#[derive(Clone)]
struct Req {
    role: Role,
    addr: SocketAddr,
    method: String,
    target: String,
    headers: Vec<(String, Vec<u8>)>,
    body: Option<Vec<u8>>,
    /// The mutations applied, for the report.
    what: Vec<String>,
    /// Another method than the document's.
    other_method: bool,
}

fn shown(bytes: &[u8], max: usize) -> String {
    let s = String::from_utf8_lossy(bytes);
    if s.chars().count() > max {
        format!(
            "{}… ({} bytes)",
            s.chars().take(max).collect::<String>().escape_debug(),
            bytes.len()
        )
    } else {
        s.escape_debug().to_string()
    }
}

impl fmt::Display for Req {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "  {} {} ({} role)",
            self.method,
            shown(self.target.as_bytes(), 300),
            self.role
        )?;
        for (k, v) in &self.headers {
            writeln!(f, "  {k}: {}", shown(v, 200))?;
        }
        match &self.body {
            Some(b) => writeln!(f, "  body: {}", shown(b, 400))?,
            None => writeln!(f, "  (no body)")?,
        }
        write!(f, "  mutations: {}", self.what.join(", "))
    }
}

struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn dechunk(mut b: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = b.windows(2).position(|w| w == b"\r\n")?;
        let size = std::str::from_utf8(&b[..line_end])
            .ok()?
            .split(';')
            .next()?
            .trim()
            .to_string();
        let n = usize::from_str_radix(&size, 16).ok()?;
        b = &b[line_end + 2..];
        if n == 0 {
            return Some(out);
        }
        out.extend_from_slice(b.get(..n)?);
        b = b.get(n + 2..)?;
    }
}

/// Sends one request on its own connection (`Connection: close`) and reads
/// the answer to the end.
async fn send(req: &Req) -> Result<Resp, String> {
    let mut bytes = format!(
        "{} {} HTTP/1.1\r\nhost: {}\r\nconnection: close\r\n",
        req.method, req.target, req.addr
    )
    .into_bytes();
    for (k, v) in &req.headers {
        bytes.extend_from_slice(k.as_bytes());
        bytes.extend_from_slice(b": ");
        bytes.extend_from_slice(v);
        bytes.extend_from_slice(b"\r\n");
    }
    if let Some(b) = &req.body {
        bytes.extend_from_slice(format!("content-length: {}\r\n", b.len()).as_bytes());
    }
    bytes.extend_from_slice(b"\r\n");
    if let Some(b) = &req.body {
        bytes.extend_from_slice(b);
    }
    let exchange = async {
        let stream = TcpStream::connect(req.addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let _ = stream.set_nodelay(true);
        let (mut rd, mut wr) = stream.into_split();
        // Write and read at once: the server may answer (413, 415) before it
        // has read the body. The write half stays open until the answer is
        // in: a half-closed connection may be dropped by the server.
        let write = async move {
            let _ = wr.write_all(&bytes).await;
            wr
        };
        let read = async {
            let mut buf = Vec::new();
            let r = rd.read_to_end(&mut buf).await;
            (buf, r)
        };
        let (_wr, (buf, r)) = tokio::join!(write, read);
        if buf.is_empty() {
            return Err(format!(
                "connection closed without an answer ({r:?}): did the handler panic?"
            ));
        }
        Ok(buf)
    };
    let buf = tokio::time::timeout(Duration::from_secs(20), exchange)
        .await
        .map_err(|_| "no answer within 20 s".to_string())??;
    let mut buf = &buf[..];
    // Skip interim answers (`100 Continue` to `Expect: 100-continue`).
    while buf.starts_with(b"HTTP/1.1 1") {
        let end = buf
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .ok_or("unterminated interim answer")?;
        buf = &buf[end + 4..];
    }
    let head_end = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| format!("no end of headers in {}", shown(buf, 300)))?;
    let head = String::from_utf8_lossy(&buf[..head_end]);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = buf[head_end + 4..].to_vec();
    if headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"))
    {
        body = dechunk(&body).ok_or("bad chunked body")?;
    }
    Ok(Resp {
        status,
        headers,
        body,
    })
}

fn gen_request(
    op: &Operation,
    addr: SocketAddr,
    doc: &Value,
    known: &Known,
    rng: &mut StdRng,
) -> Req {
    let keyed = op.params.iter().any(|p| p.name == "Idempotency-Key");
    if keyed && rng.random_bool(0.08) {
        return replay_request(op, addr, doc, known);
    }
    let mut what = Vec::new();
    let mut method = op.method.clone();
    let mut other_method = false;
    if rng.random_bool(0.03) {
        let m = pick(rng, &METHODS).to_string();
        if m != op.method {
            what.push(format!("method {m}"));
            other_method = true;
            method = m;
        }
    }

    // Path parameters.
    let mut path = op.template.clone();
    for p in op.params.iter().filter(|p| p.loc == Loc::Path) {
        let value = match rng.random_range(0..10) {
            0..=4 => match gen_valid(doc, &p.schema, &p.name, known, rng) {
                Value::String(s) => pct(&s),
                v => render(&v),
            },
            5 => {
                let b = pick(rng, BAD_PCT).to_string();
                what.push(format!("{} {b}", p.name));
                b
            }
            _ => {
                let t = weird_text(rng, known);
                what.push(format!(
                    "{} {:?}",
                    p.name,
                    t.chars().take(40).collect::<String>()
                ));
                pct(&t)
            }
        };
        path = path.replace(&format!("{{{}}}", p.name), &value);
    }

    // Query parameters.
    let mut query: Vec<String> = Vec::new();
    for p in op.params.iter().filter(|p| p.loc == Loc::Query) {
        match rng.random_range(0..12) {
            0 if p.required => what.push(format!("no {}", p.name)),
            0 | 1 if !p.required => {}
            2 => {
                let t = weird_text(rng, known);
                what.push(format!(
                    "{} {:?}",
                    p.name,
                    t.chars().take(40).collect::<String>()
                ));
                query.push(format!("{}={}", p.name, pct(&t)));
            }
            3 => {
                what.push(format!("{} twice", p.name));
                for _ in 0..2 {
                    let v = gen_valid(doc, &p.schema, &p.name, known, rng);
                    query.push(format!("{}={}", p.name, pct(&plain(&v))));
                }
            }
            4 => {
                what.push(format!("{} without =", p.name));
                query.push(p.name.clone());
            }
            5 => {
                let b = pick(rng, BAD_PCT);
                what.push(format!("{} {b}", p.name));
                query.push(format!("{}={b}", p.name));
            }
            _ => {
                let v = gen_valid(doc, &p.schema, &p.name, known, rng);
                query.push(format!("{}={}", p.name, pct(&plain(&v))));
            }
        }
    }
    if rng.random_bool(0.1) {
        what.push("extra query".into());
        query.push(format!(
            "{}={}",
            pct(&random_text(rng, 8)),
            pct(&random_text(rng, 8))
        ));
    }
    if rng.random_bool(0.03) {
        what.push("odd query".into());
        query.push(
            pick(
                rng,
                &[
                    "&&",
                    "=",
                    "=x",
                    "a=b=c",
                    "%",
                    "user_id[]=1",
                    "limit=1&limit=2",
                ],
            )
            .to_string(),
        );
    }
    let target = if query.is_empty() {
        path
    } else {
        format!("{path}?{}", query.join("&"))
    };

    // Headers.
    let mut headers: Vec<(String, Vec<u8>)> = Vec::new();
    for p in op.params.iter().filter(|p| p.loc == Loc::Header) {
        let v: Option<Vec<u8>> = match rng.random_range(0..10) {
            0..=3 => None,
            4..=6 => Some(plain(&gen_valid(doc, &p.schema, &p.name, known, rng)).into_bytes()),
            7 => Some(
                pick(
                    rng,
                    &[&b""[..], b"   ", b"a\tb", b"\xc3\xa9t\xc3\xa9", b"\xff\xfe"],
                )
                .to_vec(),
            ),
            8 => Some("k".repeat(rng.random_range(60..400)).into_bytes()),
            _ => Some(weird_text(rng, known).into_bytes()),
        };
        if let Some(mut v) = v {
            // A header value may not hold line breaks or other control bytes.
            v.retain(|b| *b == b'\t' || (*b >= 0x20 && *b != 0x7f));
            what.push(format!("{} {}", p.name, shown(&v, 40)));
            headers.push((p.name.clone(), v));
        }
    }
    if op.secured || rng.random_bool(0.05) {
        let auth: Option<&[u8]> = match rng.random_range(0..10) {
            0..=4 => Some(b"Bearer test-token"),
            5 => None,
            6 => Some(b"Bearer wrong-token"),
            7 => Some(*pick::<&[u8]>(
                rng,
                &[
                    b"Bearer ",
                    b"Bearer",
                    b"bearer test-token",
                    b"Basic dGVzdDp0ZXN0",
                ],
            )),
            8 => Some(b"Bearer test-token-and-more"),
            _ => Some(b"Bearer \xc3\xa9"),
        };
        if let Some(a) = auth {
            if a != b"Bearer test-token" {
                what.push(format!("authorization {}", shown(a, 40)));
            }
            headers.push(("authorization".into(), a.to_vec()));
        } else {
            what.push("no authorization".into());
        }
    }

    // Body and content type.
    let mut body: Option<Vec<u8>> = None;
    let mut content_type: Option<String> = None;
    if let Some(schema) = &op.body {
        let valid = gen_valid(doc, schema, "", known, rng);
        let text = match rng.random_range(0..20) {
            0..=5 => render(&valid),
            6..=8 => {
                let mut v = valid.clone();
                if let Some(o) = v.as_object_mut() {
                    let keys: Vec<String> = o.keys().cloned().collect();
                    if let Some(k) = keys.choose(rng) {
                        what.push(format!("without {k}"));
                        o.remove(k);
                    }
                }
                render(&v)
            }
            9..=12 => {
                let mut v = valid.clone();
                if let Some(o) = v.as_object_mut() {
                    let keys: Vec<String> = o.keys().cloned().collect();
                    if let Some(k) = keys.choose(rng) {
                        let w = weird(rng);
                        what.push(format!("{k} = {}", shown(render(&w).as_bytes(), 60)));
                        o.insert(k.clone(), w);
                    }
                }
                render(&v)
            }
            13 => {
                let mut v = valid.clone();
                if let Some(o) = v.as_object_mut() {
                    for _ in 0..rng.random_range(1..4) {
                        let k = random_text(rng, 10);
                        o.insert(k, weird(rng));
                    }
                }
                what.push("extra fields".into());
                render(&v)
            }
            14 => {
                // The same key twice, the second of another type.
                let t = render(&valid);
                let k = valid
                    .as_object()
                    .and_then(|o| o.keys().next().cloned())
                    .unwrap_or_else(|| "x".into());
                what.push(format!("{k} twice"));
                format!("{{{}:{},{}", Value::from(k), render(&weird(rng)), &t[1..])
            }
            15 => {
                let w = weird(rng);
                what.push("another type of body".into());
                render(&w)
            }
            16 => {
                let t = render(&valid);
                let broken = match rng.random_range(0..8) {
                    0 => t.chars().take(rng.random_range(0..t.len())).collect(),
                    1 => format!("{t}garbage"),
                    2 => t.replace('"', "'"),
                    3 => format!("\u{feff}{t}"),
                    4 => "{\"user_id\": NaN}".to_string(),
                    5 => "{/* comment */}".to_string(),
                    6 => "{\"a\":}".to_string(),
                    _ => "[".repeat(rng.random_range(100..3000)),
                };
                what.push("invalid JSON".into());
                broken
            }
            17 => {
                what.push("empty body".into());
                String::new()
            }
            18 => {
                what.push("body over 64 KiB".into());
                let mut v = valid.clone();
                if let Some(o) = v.as_object_mut() {
                    o.insert("pad".into(), Value::String("p".repeat(70_000)));
                }
                render(&v)
            }
            _ => {
                what.push("nested body".into());
                let depth = rng.random_range(10..200);
                format!(
                    "{}{}{}",
                    "{\"a\":".repeat(depth),
                    render(&valid),
                    "}".repeat(depth)
                )
            }
        };
        let mut b = text.into_bytes();
        if rng.random_bool(0.02) {
            what.push("invalid UTF-8 in body".into());
            let at = rng.random_range(0..=b.len());
            b.insert(at, 0xff);
        }
        body = Some(b);
        content_type = Some("application/json".into());
    } else if rng.random_bool(0.1) {
        what.push("unexpected body".into());
        body = Some(render(&weird(rng)).into_bytes());
        content_type = Some("application/json".into());
    }
    if rng.random_bool(0.12) {
        let ct = pick(
            rng,
            &[
                "",
                "text/plain",
                "application/x-www-form-urlencoded",
                "multipart/form-data; boundary=x",
                "APPLICATION/JSON",
                "application/json; charset=utf-8",
                "application/json;charset=latin1",
                "application/problem+json",
                "application/jsonx",
                "json",
                "application/",
                "*/*",
                ";",
            ],
        );
        what.push(format!("content-type {ct:?}"));
        content_type = (!ct.is_empty()).then(|| ct.to_string());
    }
    if let Some(ct) = content_type {
        headers.push(("content-type".into(), ct.into_bytes()));
    }
    if rng.random_bool(0.05) {
        let (k, v) = pick(
            rng,
            &[
                ("content-encoding", "gzip"),
                ("accept", "text/html"),
                ("expect", "100-continue"),
                ("x-forwarded-for", "::1"),
                ("cookie", "a=b"),
            ],
        );
        what.push(format!("{k}: {v}"));
        headers.push((k.to_string(), v.as_bytes().to_vec()));
    }
    if what.is_empty() {
        what.push("none (valid)".into());
    }
    Req {
        role: op.role,
        addr,
        method,
        target,
        headers,
        body,
        what,
        other_method,
    }
}

/// The same valid request with the same Idempotency-Key every time: the
/// first one creates, the others (some of them at the same moment) replay.
fn replay_request(op: &Operation, addr: SocketAddr, doc: &Value, known: &Known) -> Req {
    let mut rng = StdRng::seed_from_u64(0x5eed);
    let mut target = op.template.clone();
    for p in op.params.iter().filter(|p| p.loc == Loc::Path) {
        let v = plain(&gen_valid(doc, &p.schema, &p.name, known, &mut rng));
        target = target.replace(&format!("{{{}}}", p.name), &pct(&v));
    }
    let body = op
        .body
        .as_ref()
        .map(|schema| render(&gen_valid(doc, schema, "", known, &mut rng)).into_bytes());
    Req {
        role: op.role,
        addr,
        method: op.method.clone(),
        target,
        headers: vec![
            ("Idempotency-Key".into(), b"fuzz-replay".to_vec()),
            ("content-type".into(), b"application/json".to_vec()),
        ],
        body,
        what: vec!["the keyed request again".into()],
        other_method: false,
    }
}

/// A JSON value as a parameter's text: strings without quotes.
fn plain(v: &Value) -> String {
    match v {
        Value::String(s) if !s.starts_with("\u{0}RAW:") => s.clone(),
        other => render(other),
    }
}

// ---------------------------------------------------------------------------
// Checking an answer.

/// The problems with an answer, if any.
fn check(op: &Operation, doc: &Value, req: &Req, resp: &Resp) -> Vec<String> {
    let mut problems = Vec::new();
    let status = resp.status;
    if status >= 500 {
        problems.push(format!("server error {status}"));
    }
    let json: Option<Value> = serde_json::from_slice(&resp.body).ok();
    if (400..600).contains(&status) {
        let ct = resp.header("content-type").unwrap_or("");
        // The envelope, with a code the document's Error schema lists.
        let env_ok = ct.starts_with("application/json")
            && json.as_ref().is_some_and(|j| {
                validate(
                    doc,
                    &json!({"$ref": "#/components/schemas/Error"}),
                    j,
                    "body",
                )
                .is_ok()
            });
        if !env_ok {
            problems.push(format!(
                "{status} without the error envelope (content-type {ct:?})"
            ));
        }
    }
    if resp.header("x-request-id").is_none() {
        problems.push("no X-Request-ID in the answer".into());
    }
    if req.other_method {
        // Another method on a documented path: any 4xx with the envelope
        // will do (the route test checks which methods are served).
        return problems;
    }
    // An empty path parameter leaves the route: 404 "no such route".
    let no_route = status == 404 && is_no_route(&json);
    if !op.statuses().contains(&status) && !no_route {
        problems.push(format!(
            "status {status} is not documented for {} (documented: {:?})",
            op.name(),
            op.statuses()
        ));
    }
    if let Some((_, Some(schema))) = op.responses.iter().find(|(s, _)| *s == status) {
        match &json {
            None => problems.push(format!("{status} answer is not JSON")),
            Some(j) => {
                if let Err(e) = validate(doc, schema, j, "body") {
                    problems.push(format!("{status} answer does not match the document: {e}"));
                }
            }
        }
    }
    problems
}

fn is_no_route(json: &Option<Value>) -> bool {
    json.as_ref()
        .is_some_and(|j| j["error"] == "no such route" && j["code"] == "NOT_FOUND")
}

// ---------------------------------------------------------------------------
// The tests.

fn seed() -> u64 {
    std::env::var("DOP_FUZZ_SEED")
        .ok()
        .map(|s| s.trim().parse().expect("DOP_FUZZ_SEED is a u64"))
        .unwrap_or_else(rand::random)
}

fn op_seed(seed: u64, op: &Operation) -> u64 {
    // FNV-1a of the operation's name, mixed with the run's seed.
    op.name().bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    }) ^ seed
}

/// Rows for the generated requests to hit: products, orders, sagas. The
/// sagas are then set to a failed compensation, so that operator retries
/// get past the 409 and re-drive them (202) while other requests run.
async fn known_rows(s: &Stack) -> Known {
    use diesel_async::SimpleAsyncConnection;
    let stocked = product_id();
    let empty = product_id();
    s.add_product(stocked, 1_000_000).await;
    s.add_product(empty, 0).await;
    let mut uuids = Vec::new();
    let mut sagas = Vec::new();
    for pid in [stocked, empty, 777_777_777] {
        let order = s.order(pid, 1, "12.50").await;
        s.wait_terminal(&order, Duration::from_secs(20)).await;
        let saga = s.saga_of(&order).await;
        sagas.push(format!("'{saga}'"));
        uuids.push(saga);
        uuids.push(order);
    }
    s.db(Role::Order)
        .await
        .batch_execute(&format!(
            "UPDATE saga_states SET status = 'FAILED', current_step = 'DONE', \
             failed_step = 'RELEASING_INVENTORY' \
             WHERE saga_id IN ({})",
            sagas.join(",")
        ))
        .await
        .expect("set the sagas to a failed compensation");
    Known {
        uuids,
        products: vec![stocked, empty, 1, MAX_ID],
        users: vec![42, 7],
        keys: vec![
            "fuzz-key-1".into(),
            "fuzz-key-2".into(),
            "  fuzz-key-1  ".into(),
        ],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fuzz_every_operation_of_every_role_from_its_openapi_document() {
    let seed = seed();
    let replay =
        format!("replay with DOP_FUZZ_SEED={seed} cargo nextest run -E 'test(/fuzz_every/)'");
    println!("fuzz seed {seed}: {replay}");
    let cases: Option<usize> = std::env::var("DOP_FUZZ_CASES")
        .ok()
        .map(|v| v.parse().expect("DOP_FUZZ_CASES is a number"));
    let only = std::env::var("DOP_FUZZ_ONLY").ok();
    let s = Stack::start(Opts::default()).await;
    let known = known_rows(&s).await;
    let started = std::time::Instant::now();
    // One example of each kind of failure (operation and problems), counted.
    let mut failures: BTreeMap<String, (usize, String)> = BTreeMap::new();
    let mut failed = 0usize;
    let mut sent = 0usize;
    let mut by_status: BTreeMap<u16, usize> = BTreeMap::new();
    for role in Role::ALL {
        let doc = doc_on_disk(role);
        let addr = s.addrs[&role];
        for op in operations(role, &doc) {
            if only.as_deref().is_some_and(|o| !op.name().contains(o)) {
                continue;
            }
            let n = cases.unwrap_or(if op.is_common() { COMMON_CASES } else { CASES });
            let mut rng = StdRng::seed_from_u64(op_seed(seed, &op));
            let reqs: Vec<Req> = (0..n)
                .map(|_| gen_request(&op, addr, &doc, &known, &mut rng))
                .collect();
            for chunk in reqs.chunks(PARALLEL) {
                let mut set = tokio::task::JoinSet::new();
                for (i, req) in chunk.iter().enumerate() {
                    let req = req.clone();
                    set.spawn(async move { (i, send(&req).await) });
                }
                while let Some(joined) = set.join_next().await {
                    let (i, result) = joined.expect("request task");
                    let req = &chunk[i];
                    sent += 1;
                    let problems = match &result {
                        Ok(resp) => {
                            *by_status.entry(resp.status).or_default() += 1;
                            check(&op, &doc, req, resp)
                        }
                        Err(e) => vec![e.clone()],
                    };
                    if problems.is_empty() {
                        continue;
                    }
                    failed += 1;
                    let kind = format!(
                        "{}: {}",
                        op.name(),
                        problems
                            .iter()
                            .map(|p| p.split(": ").next().unwrap_or(p))
                            .collect::<Vec<_>>()
                            .join("; ")
                    );
                    let entry = failures.entry(kind).or_default();
                    entry.0 += 1;
                    if entry.0 == 1 {
                        let answer = match &result {
                            Ok(r) => format!(
                                "  answer: {} {}\n  answer headers: {:?}",
                                r.status,
                                shown(&r.body, 400),
                                r.headers
                            ),
                            Err(e) => format!("  answer: none ({e})"),
                        };
                        entry.1 = format!("{}\n{req}\n{answer}", problems.join("; "));
                    }
                }
            }
        }
    }
    println!(
        "fuzz: {sent} requests in {:.1} s, statuses {by_status:?}",
        started.elapsed().as_secs_f64()
    );
    // Still alive, and the stores were up all along (a 503 is no excuse).
    for role in Role::ALL {
        for path in ["/health", "/ready"] {
            let r = s.get(role, path).await;
            if r.status != 200 {
                let kind = format!("{role} GET {path} after the fuzzing");
                failures.insert(kind, (1, format!("  answered {}: {}", r.status, r.text())));
                failed += 1;
            }
        }
    }
    s.teardown().await;
    let report: Vec<String> = failures
        .iter()
        .map(|(kind, (n, example))| format!("{kind} ({n} times), e.g.:\n{example}"))
        .collect();
    assert!(
        failures.is_empty(),
        "{failed} of {sent} requests failed (seed {seed}; {replay}); {} kinds of failure:\n\n{}",
        failures.len(),
        report.join("\n\n")
    );
}

/// The routes each role serves, as written in its router (plus the common
/// ones); the document must list exactly these.
fn known_routes(role: Role) -> Vec<(&'static str, &'static str)> {
    let mut r = match role {
        Role::Order => vec![
            ("POST", "/orders"),
            ("GET", "/orders"),
            ("GET", "/orders/{id}"),
            ("POST", "/orders/{id}/cancel"),
            ("GET", "/admin/sagas"),
            ("GET", "/admin/sagas/{saga_id}"),
            ("POST", "/admin/sagas/{saga_id}/retry"),
            ("GET", "/admin/summary"),
            ("GET", "/admin/dlq"),
            ("POST", "/admin/dlq/{queue}/redrive"),
        ],
        Role::Inventory => vec![
            ("POST", "/inventory"),
            ("GET", "/inventory/{product_id}"),
            ("PUT", "/inventory/{product_id}"),
        ],
        Role::Payment => vec![("POST", "/payments"), ("GET", "/payments/{order_id}")],
    };
    r.extend([
        ("GET", "/health"),
        ("GET", "/ready"),
        ("GET", "/metrics"),
        ("GET", "/openapi.json"),
    ]);
    r
}

/// A request to `template` with parameters that parse, to see it routed.
fn probe(op_params: &[Param], template: &str, method: &str, role: Role, addr: SocketAddr) -> Req {
    let mut path = template.to_string();
    let mut query = Vec::new();
    for p in op_params {
        let v = if p.schema["type"] == "integer" {
            "1".to_string()
        } else {
            uuid::Uuid::new_v4().to_string()
        };
        match p.loc {
            Loc::Path => path = path.replace(&format!("{{{}}}", p.name), &v),
            Loc::Query if p.required => query.push(format!("{}={v}", p.name)),
            _ => {}
        }
    }
    // Fill what no parameter list names (a method the path does not have).
    for (name, v) in [
        ("{id}", "9007199254740991".to_string()),
        ("{saga_id}", uuid::Uuid::new_v4().to_string()),
        ("{order_id}", "9007199254740991".to_string()),
        ("{product_id}", "1".to_string()),
    ] {
        path = path.replace(name, &v);
    }
    let target = if query.is_empty() {
        path
    } else {
        format!("{path}?{}", query.join("&"))
    };
    let body = (method != "GET").then(|| b"{}".to_vec());
    let mut headers = vec![(
        "authorization".to_string(),
        format!("Bearer {TOKEN}").into_bytes(),
    )];
    if body.is_some() {
        headers.push(("content-type".into(), b"application/json".to_vec()));
    }
    Req {
        role,
        addr,
        method: method.into(),
        target,
        headers,
        body,
        what: vec!["route probe".into()],
        other_method: false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_documents_are_served_and_match_the_routes() {
    let s = Stack::start(Opts::default()).await;
    let mut problems = Vec::new();
    for role in Role::ALL {
        let disk = doc_on_disk(role);
        let addr = s.addrs[&role];
        // Served as it is kept in the repo.
        let r = s.get(role, "/openapi.json").await;
        assert_eq!(r.status, 200, "{role}: {}", r.text());
        assert_eq!(
            r.headers.get("content-type").and_then(|v| v.to_str().ok()),
            Some("application/json"),
            "{role}"
        );
        assert_eq!(
            r.json().unwrap(),
            disk,
            "{role}: served document differs from docs/openapi/{role}.json"
        );
        assert_eq!(disk["openapi"], "3.0.3", "{role}");

        // The document lists exactly the routes the router has.
        let ops = operations(role, &disk);
        let documented: BTreeSet<(String, String)> = ops
            .iter()
            .map(|o| (o.method.clone(), o.template.clone()))
            .collect();
        let routed: BTreeSet<(String, String)> = known_routes(role)
            .into_iter()
            .map(|(m, p)| (m.to_string(), p.to_string()))
            .collect();
        assert_eq!(
            documented, routed,
            "{role}: documented vs routed operations"
        );

        // Every documented method of every path is served; no other is.
        let templates: BTreeSet<&str> = ops.iter().map(|o| o.template.as_str()).collect();
        for template in templates {
            for method in METHODS {
                let op = ops
                    .iter()
                    .find(|o| o.template == template && o.method == method);
                let params = op.map(|o| o.params.clone()).unwrap_or_default();
                let req = probe(&params, template, method, role, addr);
                let resp = match send(&req).await {
                    Ok(r) => r,
                    Err(e) => {
                        problems.push(format!("{role} {method} {template}: {e}"));
                        continue;
                    }
                };
                let json = serde_json::from_slice(&resp.body).ok();
                let not_routed = resp.status == 405 || (resp.status == 404 && is_no_route(&json));
                match op {
                    Some(op) => {
                        if not_routed || resp.status >= 500 {
                            problems.push(format!(
                                "{role} {method} {template} is documented but answered {} {}",
                                resp.status,
                                shown(&resp.body, 200)
                            ));
                        }
                        for p in check(op, &disk, &req, &resp) {
                            problems.push(format!("{role} {method} {template}: {p}"));
                        }
                    }
                    None if !not_routed => problems.push(format!(
                        "{role} {method} {template} is served ({}) but not documented",
                        resp.status
                    )),
                    None => {}
                }
                // A 405 names the methods the path has: the documented ones.
                if resp.status == 405 {
                    let allow: BTreeSet<String> = resp
                        .header("allow")
                        .unwrap_or("")
                        .split(',')
                        .map(|m| m.trim().to_string())
                        .filter(|m| !m.is_empty() && m != "HEAD")
                        .collect();
                    let documented: BTreeSet<String> = ops
                        .iter()
                        .filter(|o| o.template == template)
                        .map(|o| o.method.clone())
                        .collect();
                    if allow != documented {
                        problems.push(format!(
                            "{role} {method} {template}: Allow {allow:?}, documented {documented:?}"
                        ));
                    }
                }
            }
        }
        // The other roles' routes are not served here.
        for other in Role::ALL.into_iter().filter(|o| *o != role) {
            for (method, template) in known_routes(other) {
                if templates_contains(&ops, template) {
                    continue;
                }
                let req = probe(&[], template, method, role, addr);
                let resp = send(&req).await.expect("answer");
                let json = serde_json::from_slice(&resp.body).ok();
                if !(resp.status == 404 && is_no_route(&json)) {
                    problems.push(format!(
                        "{role} serves {method} {template} of {other}: {}",
                        resp.status
                    ));
                }
            }
        }
    }
    s.teardown().await;
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

fn templates_contains(ops: &[Operation], template: &str) -> bool {
    ops.iter().any(|o| o.template == template)
}
