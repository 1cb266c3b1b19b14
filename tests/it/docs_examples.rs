//! The example answers in the README and docs/API.md are what the server answers: the
//! same fields (issue 21, item 9: the README's `GET /llm/logs` example lacked `epoch`),
//! each of the same JSON type.

use std::collections::BTreeMap;

use crate::common::{fast_sim, TestApp};
use powertail::sim::{Level, Record};
use serde_json::Value;

/// The JSON after the README's `# first read` curl: the `# ` comment lines up to the
/// first blank one, joined.
fn readme_logs_example() -> Value {
    let readme = include_str!("../../README.md");
    let start = readme.find("# first read\n").expect("the README's first read example");
    let text: String = readme[start..]
        .lines()
        .skip(2)
        .take_while(|l| l.starts_with("# ") || l.starts_with("#  "))
        .map(|l| l.trim_start_matches('#').trim())
        .collect();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("the README's example is not JSON ({e}): {text}"))
}

/// The first ```json block after "`GET /llm/logs`" in docs/API.md.
fn api_logs_example() -> Value {
    let api = include_str!("../../docs/API.md");
    let from = api.find("`GET /llm/logs`").unwrap();
    let block = &api[from..];
    let start = block.find("```json\n").unwrap() + "```json\n".len();
    let end = start + block[start..].find("```").unwrap();
    serde_json::from_str(&block[start..end]).unwrap()
}

/// Field → JSON type, the shape to compare.
fn shape(v: &Value) -> BTreeMap<String, &'static str> {
    let kind = |v: &Value| match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    };
    v.as_object().expect("an object").iter().map(|(k, v)| (k.clone(), kind(v))).collect()
}

#[tokio::test]
async fn the_documented_logs_answers_have_the_fields_of_a_real_one() {
    let app = TestApp::spawn(fast_sim()).await;
    let id = app.sim.with_core(|core, now| {
        let id = core.create_instance(15, None, now - 60_000);
        core.dispatch(id, now - 60_000);
        core.set_running(id, now - 60_000);
        let records = (0..3)
            .map(|k| Record {
                log_time: now - 50_000 + k,
                level: Level::Info,
                content: format!("start qwen-7b step {k}"),
                worker: "10.0.0.5:27777".into(),
            })
            .collect();
        core.deliver(id, records, now - 40_000);
        id
    });
    let real = app.logs(id, 0).await;
    assert_eq!(real["lines"].as_array().map(Vec::len), Some(3), "{real}");
    let readme = readme_logs_example();
    assert_eq!(shape(&readme), shape(&real), "README.md's example answer of GET /llm/logs");
    assert_eq!(shape(&api_logs_example()), shape(&real), "docs/API.md's example answer of GET /llm/logs");
    // The epoch in the example has the shape of a real one: 16 hex digits, `-`, a number.
    let shape_of_epoch = |e: &str| {
        e.split_once('-').is_some_and(|(boot, n)| {
            boot.len() == 16
                && boot.bytes().all(|b| b.is_ascii_hexdigit())
                && !n.is_empty()
                && n.bytes().all(|b| b.is_ascii_digit())
        })
    };
    assert!(shape_of_epoch(real["epoch"].as_str().unwrap()), "{real}");
    assert!(shape_of_epoch(readme["epoch"].as_str().unwrap()), "{readme}");
}
