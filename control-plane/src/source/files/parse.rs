//! Turning the text of one file into typed objects: splitting multi-document YAML with line numbers,
//! converting YAML values to JSON values, expanding `List`s, and describing what failed and where.
//!
//! Nothing here touches the file system; [`parse_file`] is a pure function of a file's text.

use ambient_index::model::{Kind, Object, ObjectRef};

/// One YAML document of a file, with the line numbers needed to report problems.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Document {
    /// 1-based line in the file of the first line of `text`.
    pub start_line: usize,
    /// 1-based line in the file of the first line that holds content (not blank, not a comment).
    pub content_line: usize,
    /// The document's text; its line `n` is line `start_line + n - 1` of the file.
    pub text: String,
}

/// Something wrong with one document (or one item of a `List`) of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Problem {
    /// 1-based line in the file.
    pub line: usize,
    /// `Kind/namespace/name` when it could be read, else empty.
    pub object: String,
    pub message: String,
}

/// What one read of a file yielded.
#[derive(Debug, Default)]
pub(crate) struct Parsed {
    /// Accepted objects, in file order, with the line of the document that defined them.
    pub objects: Vec<(Object, usize)>,
    pub problems: Vec<Problem>,
    /// `apiVersion/kind` of every object skipped because ambientd does not read its kind.
    pub skipped: Vec<String>,
}

impl Parsed {
    fn problem(&mut self, line: usize, object: String, message: impl Into<String>) {
        self.problems.push(Problem {
            line,
            object,
            message: message.into(),
        });
    }
}

/// Whether a file should be read as a stream of JSON values rather than as YAML.
pub(crate) fn is_json(path: &std::path::Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("json"))
}

/// Parses the whole text of one file. `json` selects the JSON reader (for `.json` files); everything
/// else is read as multi-document YAML.
pub(crate) fn parse_file(text: &str, json: bool) -> Parsed {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut out = Parsed::default();
    if json {
        parse_json_stream(text, &mut out);
    } else {
        for doc in split_documents(text) {
            parse_yaml_document(&doc, &mut out);
        }
    }
    out
}

/// A line that starts a document: `---` alone, or followed by whitespace and then a comment or content.
/// Returns what follows the marker (possibly empty).
fn document_start(line: &str) -> Option<&str> {
    let rest = line.strip_prefix("---")?;
    if rest.is_empty() || rest.starts_with([' ', '\t']) {
        Some(rest)
    } else {
        None
    }
}

/// A line that ends a document: `...` alone or followed by whitespace (and a comment).
fn document_end(line: &str) -> bool {
    line.strip_prefix("...")
        .is_some_and(|rest| rest.is_empty() || (rest.starts_with([' ', '\t']) && !is_content(rest)))
}

fn is_content(line: &str) -> bool {
    let t = line.trim_start();
    !t.is_empty() && !t.starts_with('#')
}

/// Splits multi-document YAML on `---` and `...` marker lines, keeping each document's line numbers.
/// Documents that are empty or only comments are dropped. Directive lines (`%YAML`, `%TAG`) before a
/// document's content are blanked, so line numbers are unchanged.
pub(crate) fn split_documents(text: &str) -> Vec<Document> {
    let mut docs = Vec::new();
    let mut current = DocumentBuilder::new(1);
    for (i, raw) in text.split('\n').enumerate() {
        let number = i + 1;
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        if let Some(rest) = document_start(line) {
            docs.extend(current.finish());
            if is_content(rest) {
                // `--- value`: the document starts on this line; keep the columns of what follows.
                current = DocumentBuilder::new(number);
                current.push(&format!("{}{rest}", " ".repeat(3)), number);
            } else {
                current = DocumentBuilder::new(number + 1);
            }
        } else if document_end(line) {
            docs.extend(current.finish());
            current = DocumentBuilder::new(number + 1);
        } else if current.content_line.is_none() && line.starts_with('%') {
            current.push("", number);
        } else {
            current.push(raw, number);
        }
    }
    docs.extend(current.finish());
    docs
}

struct DocumentBuilder {
    start_line: usize,
    content_line: Option<usize>,
    text: String,
}

impl DocumentBuilder {
    fn new(start_line: usize) -> Self {
        DocumentBuilder {
            start_line,
            content_line: None,
            text: String::new(),
        }
    }

    fn push(&mut self, line: &str, number: usize) {
        if self.content_line.is_none() && is_content(line) {
            self.content_line = Some(number);
        }
        self.text.push_str(line);
        self.text.push('\n');
    }

    fn finish(self) -> Option<Document> {
        Some(Document {
            start_line: self.start_line,
            content_line: self.content_line?,
            text: self.text,
        })
    }
}

fn parse_yaml_document(doc: &Document, out: &mut Parsed) {
    // A YAML error's line is relative to the document; report it (and the lines in its message) as
    // lines of the file.
    let yaml_problem = |e: serde_norway::Error, out: &mut Parsed| {
        let line = e.location().map_or(doc.content_line, |l| {
            doc.start_line + l.line().saturating_sub(1)
        });
        let message = shift_lines(&e.to_string(), doc.start_line - 1);
        out.problem(line, scrape_identity(&doc.text), message);
    };
    let mut value = match serde_norway::from_str::<serde_norway::Value>(&doc.text) {
        Ok(v) => v,
        Err(e) => return yaml_problem(e, out),
    };
    if let Err(e) = value.apply_merge() {
        return yaml_problem(e, out);
    }
    if value.is_null() {
        return;
    }
    match yaml_to_json(value) {
        Ok(json) => accept(json, doc.content_line, "", out),
        Err(message) => out.problem(doc.content_line, scrape_identity(&doc.text), message),
    }
}

/// Reads a `.json` file: one JSON value, or several one after another (as some tools write them).
fn parse_json_stream(text: &str, out: &mut Parsed) {
    let mut stream = serde_json::Deserializer::from_str(text).into_iter::<serde_json::Value>();
    loop {
        let offset = stream.byte_offset();
        match stream.next() {
            None => break,
            Some(Ok(value)) => {
                let skipped_ws = text
                    .get(offset..)
                    .map_or(0, |rest| rest.len() - rest.trim_start().len());
                accept(value, line_at(text, offset + skipped_ws), "", out);
            }
            Some(Err(e)) => {
                // The rest of the stream cannot be resynchronised; everything after the error is lost.
                out.problem(e.line().max(1), String::new(), e.to_string());
                break;
            }
        }
    }
}

/// The 1-based line of a byte offset.
fn line_at(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// Rewrites `line N column M` in a YAML error message (relative to its document) so that `N` is the
/// line in the file.
fn shift_lines(message: &str, offset: usize) -> String {
    if offset == 0 {
        return message.to_string();
    }
    let mut out = String::with_capacity(message.len() + 8);
    let mut rest = message;
    while let Some(at) = rest.find("line ") {
        let (before, after) = rest.split_at(at + "line ".len());
        out.push_str(before);
        let digits = after.bytes().take_while(u8::is_ascii_digit).count();
        let (number, tail) = after.split_at(digits);
        match number.parse::<usize>() {
            Ok(n) if tail.starts_with(" column") => out.push_str(&(n + offset).to_string()),
            _ => out.push_str(number),
        }
        rest = tail;
    }
    out.push_str(rest);
    out
}

/// Converts a YAML value to the JSON shape Kubernetes uses: mapping keys that are numbers or booleans
/// become strings (`portLevelMtls: {8080: ...}`), tags are dropped in favour of the tagged value, and
/// floats with no fractional part become integers (so `port: 80.0` still reads as a port).
pub(crate) fn yaml_to_json(value: serde_norway::Value) -> Result<serde_json::Value, String> {
    use serde_json::Value as J;
    use serde_norway::Value as Y;
    Ok(match value {
        Y::Null => J::Null,
        Y::Bool(b) => J::Bool(b),
        Y::Number(n) => J::Number(json_number(&n)?),
        Y::String(s) => J::String(s),
        Y::Sequence(items) => J::Array(
            items
                .into_iter()
                .map(yaml_to_json)
                .collect::<Result<Vec<_>, _>>()?,
        ),
        Y::Mapping(map) => {
            let mut object = serde_json::Map::with_capacity(map.len());
            for (k, v) in map {
                object.insert(mapping_key(k)?, yaml_to_json(v)?);
            }
            J::Object(object)
        }
        Y::Tagged(tagged) => yaml_to_json(tagged.value)?,
    })
}

/// Largest integer an `f64` holds exactly.
const EXACT_F64_INT: f64 = 9_007_199_254_740_992.0;

fn json_number(n: &serde_norway::Number) -> Result<serde_json::Number, String> {
    if let Some(i) = n.as_i64() {
        return Ok(i.into());
    }
    if let Some(u) = n.as_u64() {
        return Ok(u.into());
    }
    let f = n.as_f64().unwrap_or(f64::NAN);
    if f.is_finite() && f.fract() == 0.0 && f.abs() <= EXACT_F64_INT {
        return Ok((f as i64).into());
    }
    serde_json::Number::from_f64(f)
        .ok_or_else(|| format!("the number {n} cannot be represented in JSON"))
}

fn mapping_key(key: serde_norway::Value) -> Result<String, String> {
    use serde_norway::Value as Y;
    match key {
        Y::String(s) => Ok(s),
        Y::Number(n) => Ok(match json_number(&n) {
            Ok(j) => j.to_string(),
            Err(_) => n.to_string(),
        }),
        Y::Bool(b) => Ok(b.to_string()),
        Y::Null => Ok("null".to_string()),
        Y::Tagged(tagged) => mapping_key(tagged.value),
        Y::Sequence(_) | Y::Mapping(_) => Err(
            "a mapping key is a list or a mapping; Kubernetes objects only have scalar keys"
                .to_string(),
        ),
    }
}

fn str_field<'a>(value: &'a serde_json::Value, field: &str) -> &'a str {
    value.get(field).and_then(|v| v.as_str()).unwrap_or("")
}

/// `Kind/namespace/name` of a raw object of a kind ambientd reads, or empty when that cannot be told.
fn describe(value: &serde_json::Value) -> String {
    let metadata = value.get("metadata");
    let name = metadata
        .and_then(|m| m.get("name"))
        .and_then(|v| v.as_str());
    let namespace = metadata
        .and_then(|m| m.get("namespace"))
        .and_then(|v| v.as_str());
    identity(
        str_field(value, "apiVersion"),
        str_field(value, "kind"),
        namespace,
        name,
    )
}

fn identity(api_version: &str, kind: &str, namespace: Option<&str>, name: Option<&str>) -> String {
    let (Some(kind), Some(name)) = (
        Kind::from_api(api_version, kind),
        name.filter(|n| !n.is_empty()),
    ) else {
        return String::new();
    };
    let namespace = if kind.cluster_scoped() {
        ""
    } else {
        namespace.filter(|n| !n.is_empty()).unwrap_or("default")
    };
    ObjectRef::new(kind, namespace, name).to_string()
}

/// Best-effort identity of a document that is not valid YAML, read line by line: top-level
/// `apiVersion:` and `kind:`, and `name:`/`namespace:` directly under `metadata:`.
fn scrape_identity(text: &str) -> String {
    let (mut api_version, mut kind, mut name, mut namespace) = (None, None, None, None);
    let mut in_metadata = false;
    let mut metadata_indent = None;
    for line in text.lines() {
        if !is_content(line) {
            continue;
        }
        let body = line.trim_start();
        let indent = line.len() - body.len();
        if indent == 0 {
            in_metadata = false;
            match scalar_entry(body) {
                Some(("apiVersion", v)) => api_version = Some(v),
                Some(("kind", v)) => kind = Some(v),
                _ => {
                    if body
                        .trim_end()
                        .strip_suffix(':')
                        .is_some_and(|k| k.trim() == "metadata")
                    {
                        in_metadata = true;
                        metadata_indent = None;
                    }
                }
            }
        } else if in_metadata && *metadata_indent.get_or_insert(indent) == indent {
            match scalar_entry(body) {
                Some(("name", v)) => name = Some(v),
                Some(("namespace", v)) => namespace = Some(v),
                _ => {}
            }
        }
    }
    identity(
        api_version.unwrap_or(""),
        kind.unwrap_or(""),
        namespace,
        name,
    )
}

/// `key: value` with a plain or quoted scalar value (a trailing comment removed).
fn scalar_entry(line: &str) -> Option<(&str, &str)> {
    let (key, value) = line.split_once(':')?;
    let value = match value.find(" #") {
        Some(at) => &value[..at],
        None => value,
    };
    let value = value.trim();
    let value = value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .or_else(|| value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
        .unwrap_or(value);
    (!value.is_empty()).then_some((key.trim(), value))
}

/// Accepts one raw object: expands lists, skips kinds ambientd does not read, and parses the rest.
/// `context` prefixes messages for list items (`items[3]: `).
fn accept(value: serde_json::Value, line: usize, context: &str, out: &mut Parsed) {
    if !value.is_object() {
        out.problem(
            line,
            String::new(),
            format!(
                "{context}expected a Kubernetes object (a mapping with apiVersion and kind), found {}",
                json_type(&value)
            ),
        );
        return;
    }
    let api_version = str_field(&value, "apiVersion").to_string();
    let kind = str_field(&value, "kind").to_string();
    if api_version.is_empty() || kind.is_empty() {
        out.problem(
            line,
            String::new(),
            format!("{context}not a Kubernetes object: apiVersion and kind are required"),
        );
        return;
    }
    if Kind::from_api(&api_version, &kind).is_none()
        && kind.ends_with("List")
        && value.get("items").is_some()
    {
        expand_list(value, &api_version, &kind, line, context, out);
        return;
    }
    let object = describe(&value);
    match Object::from_value(value) {
        Ok(Some(o)) => out.objects.push((o, line)),
        Ok(None) => {
            tracing::debug!(api_version = %api_version, kind = %kind, line, "skipping a kind ambientd does not read");
            out.skipped.push(format!("{api_version}/{kind}"));
        }
        Err(e) => out.problem(line, object, format!("{context}{e}")),
    }
}

/// `kind: List` (as `kubectl get -o yaml` writes) or a typed list such as `PodList`. Items of a typed
/// list that carry no `apiVersion`/`kind` (as the API server returns them) take them from the list.
fn expand_list(
    mut value: serde_json::Value,
    api_version: &str,
    kind: &str,
    line: usize,
    context: &str,
    out: &mut Parsed,
) {
    let item_kind = kind.strip_suffix("List").unwrap_or("");
    let items = value.get_mut("items").map(serde_json::Value::take);
    match items {
        None | Some(serde_json::Value::Null) => {}
        Some(serde_json::Value::Array(items)) => {
            for (i, mut item) in items.into_iter().enumerate() {
                if !item_kind.is_empty()
                    && let Some(fields) = item.as_object_mut()
                {
                    fields
                        .entry("apiVersion")
                        .or_insert_with(|| api_version.into());
                    fields.entry("kind").or_insert_with(|| item_kind.into());
                }
                accept(item, line, &format!("{context}items[{i}]: "), out);
            }
        }
        Some(other) => out.problem(
            line,
            String::new(),
            format!(
                "{context}{kind}: items must be a list, found {}",
                json_type(&other)
            ),
        ),
    }
}

fn json_type(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "a list",
        serde_json::Value::Object(_) => "a mapping",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc_lines(text: &str) -> Vec<(usize, usize)> {
        split_documents(text)
            .iter()
            .map(|d| (d.start_line, d.content_line))
            .collect()
    }

    #[test]
    fn splits_documents_with_line_numbers() {
        let text = "\
# leading comment
apiVersion: v1
kind: Namespace
---
# only a comment

--- # a marker with a comment
a: 1
---
---   
b: 2
...
# after an end marker
c: 3
--- d: 4
";
        assert_eq!(
            doc_lines(text),
            vec![(1, 2), (8, 8), (11, 11), (13, 14), (15, 15)]
        );
        let docs = split_documents(text);
        assert_eq!(docs[1].text, "a: 1\n");
        assert_eq!(docs[4].text, "    d: 4\n\n");
    }

    #[test]
    fn marker_like_lines_inside_content_do_not_split() {
        let text = "a: |\n  ---\n  text\nb: ----\n---x: 1\n";
        assert_eq!(doc_lines(text), vec![(1, 1)]);
    }

    #[test]
    fn crlf_and_directives() {
        let text = "%YAML 1.2\r\n---\r\na: 1\r\n---\r\nb: 2\r\n";
        assert_eq!(doc_lines(text), vec![(3, 3), (5, 5)]);
    }

    #[test]
    fn empty_text_has_no_documents() {
        assert!(split_documents("").is_empty());
        assert!(split_documents("---\n---\n# nothing\n...\n").is_empty());
    }

    fn to_json(yaml: &str) -> serde_json::Value {
        let value: serde_norway::Value = serde_norway::from_str(yaml).unwrap();
        yaml_to_json(value).unwrap()
    }

    #[test]
    fn yaml_to_json_stringifies_scalar_keys_and_drops_tags() {
        let json = to_json(
            "portLevelMtls:\n  8080: {mode: STRICT}\n  9090: {mode: DISABLE}\ntrue: yes\n1.5: x\n\
             tagged: !custom {a: 1}\nnum: !!int 7\nlist: !seq [1, 2]\n",
        );
        assert_eq!(
            json,
            serde_json::json!({
                "portLevelMtls": {"8080": {"mode": "STRICT"}, "9090": {"mode": "DISABLE"}},
                "true": "yes",
                "1.5": "x",
                "tagged": {"a": 1},
                "num": 7,
                "list": [1, 2],
            })
        );
    }

    #[test]
    fn yaml_to_json_numbers() {
        let json = to_json("a: 80.0\nb: 1.5\nc: -3\nd: 18446744073709551615\ne: null\nf: ~\n");
        assert_eq!(json["a"], serde_json::json!(80));
        assert!(json["a"].is_i64());
        assert_eq!(json["b"], serde_json::json!(1.5));
        assert_eq!(json["c"], serde_json::json!(-3));
        assert_eq!(json["d"], serde_json::json!(u64::MAX));
        assert!(json["e"].is_null() && json["f"].is_null());
        let nan: serde_norway::Value = serde_norway::from_str("a: .nan").unwrap();
        assert!(
            yaml_to_json(nan)
                .unwrap_err()
                .contains("cannot be represented")
        );
        let complex: serde_norway::Value = serde_norway::from_str("? [a, b]\n: 1\n").unwrap();
        assert!(yaml_to_json(complex).is_err());
    }

    #[test]
    fn merge_keys_are_applied() {
        let parsed = parse_file(
            "base: &base\n  app: x\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: n\n  labels:\n    <<: *base\n    extra: y\n",
            false,
        );
        assert!(parsed.problems.is_empty(), "{:?}", parsed.problems);
        let Object::Namespace(ns) = &parsed.objects[0].0 else {
            panic!("not a namespace")
        };
        assert_eq!(ns.meta.labels.get("app"), Some("x"));
        assert_eq!(ns.meta.labels.get("extra"), Some("y"));
    }

    #[test]
    fn peer_authentication_with_integer_port_keys() {
        let parsed = parse_file(
            "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: pa, namespace: ns}\n\
             spec:\n  portLevelMtls:\n    8080: {mode: DISABLE}\n",
            false,
        );
        assert!(parsed.problems.is_empty(), "{:?}", parsed.problems);
        let Object::PeerAuthentication(pa) = &parsed.objects[0].0 else {
            panic!("not a PeerAuthentication")
        };
        assert_eq!(
            pa.spec.port_level_mtls.keys().copied().collect::<Vec<_>>(),
            vec![8080]
        );
    }

    #[test]
    fn lists_are_expanded() {
        let text = "\
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Namespace
  metadata: {name: a}
- apiVersion: apps/v1
  kind: Deployment
  metadata: {name: d, namespace: a}
- apiVersion: v1
  kind: Pod
  metadata: {name: p, namespace: a}
---
apiVersion: v1
kind: PodList
items:
- metadata: {name: q, namespace: b}
- apiVersion: v1
  kind: Pod
  metadata: {name: r}
";
        let parsed = parse_file(text, false);
        assert!(parsed.problems.is_empty(), "{:?}", parsed.problems);
        let refs: Vec<(String, usize)> = parsed
            .objects
            .iter()
            .map(|(o, line)| (o.object_ref().to_string(), *line))
            .collect();
        assert_eq!(
            refs,
            vec![
                ("Namespace/a".to_string(), 1),
                ("Pod/a/p".to_string(), 1),
                ("Pod/b/q".to_string(), 14),
                ("Pod/default/r".to_string(), 14),
            ]
        );
        assert_eq!(parsed.skipped, vec!["apps/v1/Deployment".to_string()]);
    }

    #[test]
    fn list_item_errors_name_the_item() {
        let text = "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Pod\n  metadata: {name: ok}\n\
                    - apiVersion: v1\n  kind: Pod\n  metadata: {name: bad, namespace: x}\n  spec: 5\n";
        let parsed = parse_file(text, false);
        assert_eq!(parsed.objects.len(), 1);
        assert_eq!(parsed.problems.len(), 1);
        let p = &parsed.problems[0];
        assert_eq!((p.line, p.object.as_str()), (1, "Pod/x/bad"));
        assert!(
            p.message
                .starts_with("items[1]: spec: invalid type: integer `5`"),
            "{}",
            p.message
        );
        let bad = parse_file("apiVersion: v1\nkind: List\nitems: 3\n", false);
        assert_eq!(
            bad.problems[0].message,
            "List: items must be a list, found a number"
        );
    }

    #[test]
    fn unknown_kinds_are_skipped() {
        let text = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n---\n\
                    apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\n---\n\
                    apiVersion: v1\nkind: ConfigMap\nmetadata: {name: e}\n";
        let parsed = parse_file(text, false);
        assert!(parsed.objects.is_empty() && parsed.problems.is_empty());
        assert_eq!(
            parsed.skipped,
            vec!["v1/ConfigMap", "apps/v1/Deployment", "v1/ConfigMap"]
        );
    }

    #[test]
    fn yaml_syntax_error_has_file_line_and_scraped_name() {
        let text = "\
apiVersion: v1
kind: Namespace
metadata:
  name: fine
---
# the broken one
apiVersion: v1
kind: Pod
metadata:
  name: web
  namespace: shop
  labels:
    app: web
   oops: [
";
        let parsed = parse_file(text, false);
        assert_eq!(parsed.objects.len(), 1);
        assert_eq!(parsed.problems.len(), 1);
        let p = &parsed.problems[0];
        assert_eq!(p.object, "Pod/shop/web");
        assert_eq!(p.line, 14, "{}", p.message);
        assert!(p.message.contains("line 14 column"), "{}", p.message);
    }

    #[test]
    fn model_error_is_reported_at_the_document_line() {
        let text = "\
apiVersion: v1
kind: Namespace
metadata:
  name: fine
---

apiVersion: v1
kind: Service
metadata:
  name: api
  namespace: shop
spec:
  ports:
  - port: abc
";
        let parsed = parse_file(text, false);
        assert_eq!(parsed.objects.len(), 1);
        let p = &parsed.problems[0];
        assert_eq!((p.line, p.object.as_str()), (7, "Service/shop/api"));
        assert!(
            p.message.contains("invalid type: string \"abc\""),
            "{}",
            p.message
        );
    }

    #[test]
    fn documents_that_are_not_objects() {
        let parsed = parse_file("- a\n- b\n---\nfoo: bar\n---\nnull\n", false);
        let messages: Vec<_> = parsed
            .problems
            .iter()
            .map(|p| (p.line, p.message.clone()))
            .collect();
        assert_eq!(
            messages,
            vec![
                (
                    1,
                    "expected a Kubernetes object (a mapping with apiVersion and kind), found a list"
                        .to_string()
                ),
                (4, "not a Kubernetes object: apiVersion and kind are required".to_string()),
            ]
        );
    }

    #[test]
    fn json_streams() {
        let text = "{\"apiVersion\": \"v1\", \"kind\": \"Namespace\", \"metadata\": {\"name\": \"a\"}}\n\n\
                    {\"apiVersion\": \"v1\", \"kind\": \"List\", \"items\": [\n\
                    {\"apiVersion\": \"v1\", \"kind\": \"Namespace\", \"metadata\": {\"name\": \"b\"}}]}\n\
                    {\"apiVersion\": \"v1\",\n \"kind\": }\n";
        let parsed = parse_file(text, true);
        let lines: Vec<_> = parsed
            .objects
            .iter()
            .map(|(o, l)| (o.object_ref().to_string(), *l))
            .collect();
        assert_eq!(
            lines,
            vec![
                ("Namespace/a".to_string(), 1),
                ("Namespace/b".to_string(), 3)
            ]
        );
        assert_eq!(parsed.problems.len(), 1);
        assert_eq!(parsed.problems[0].line, 6);
    }

    #[test]
    fn shifts_line_numbers_in_messages() {
        assert_eq!(
            shift_lines(
                "mapping values are not allowed at line 2 column 5, while parsing at line 1 column 1",
                10
            ),
            "mapping values are not allowed at line 12 column 5, while parsing at line 11 column 1"
        );
        assert_eq!(shift_lines("a line 3 thing", 10), "a line 3 thing");
    }
}
