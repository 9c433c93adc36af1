//! Authorization benchmark: converting and attaching 2,000 AuthorizationPolicies in clusters of 1k and 10k
//! pods, and the cost of changing one policy.
//!
//! ```sh
//! cargo bench -p ambient-index --bench policies
//! AMBIENTD_BENCH_SIZES=1000,10000 AMBIENTD_BENCH_POLICIES=2000 cargo bench -p ambient-index --bench policies
//! ```
//!
//! Without `--bench` (as `cargo test --all-targets` runs it) it does a small smoke run.

use std::time::{Duration, Instant};

use ambient_index::model::Object;
use ambient_index::{Changes, Index, Settings};
use ambient_testkit::ClusterSpec;
use serde_json::Value;

const SEED: u64 = 42;

fn env_list(name: &str) -> Option<Vec<usize>> {
    let v = std::env::var(name).ok()?;
    let list: Vec<usize> = v.split(',').filter_map(|s| s.trim().parse().ok()).collect();
    (!list.is_empty()).then_some(list)
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let sizes = env_list("AMBIENTD_BENCH_SIZES").unwrap_or(if bench {
        vec![1_000, 10_000]
    } else {
        vec![300]
    });
    let policies = env_list("AMBIENTD_BENCH_POLICIES")
        .and_then(|l| l.first().copied())
        .unwrap_or(if bench { 2_000 } else { 100 });
    let changes = if bench { 1_000 } else { 20 };

    println!("# ambientd authorization benchmark\n");
    println!(
        "{policies} AuthorizationPolicies: 60% selector ALLOW (principals, ports), 20% selector ALLOW \
         with an HTTP method, 18% namespace DENY, 2% mesh-wide DENY. Build runs: best of 3.\n"
    );
    let results: Vec<Row> = sizes
        .iter()
        .map(|&pods| run(pods, policies, changes))
        .collect();

    let header: Vec<String> = results.iter().map(|r| format!("{} pods", r.pods)).collect();
    println!("| | {} |", header.join(" | "));
    println!("|---|{}|", vec!["---:"; results.len()].join("|"));
    let row = |label: &str, f: &dyn Fn(&Row) -> String| {
        let cells: Vec<String> = results.iter().map(f).collect();
        println!("| {label} | {} |", cells.join(" | "));
    };
    row("Authorization resources", &|r| r.authorizations.to_string());
    row("`Index::build` without policies (ms)", &|r| {
        ms(r.build_plain)
    });
    row("`Index::build` with policies (ms)", &|r| {
        ms(r.build_policies)
    });
    for (i, name) in CHANGE_KINDS.iter().enumerate() {
        row(&format!("{name}: median / p90 (µs)"), &|r| {
            format!("{:.1} / {:.1}", r.changes[i].0, r.changes[i].1)
        });
        row(&format!("{name}: names changed per apply"), &|r| {
            r.changes[i].2.clone()
        });
        row(&format!("{name}: µs per changed name"), &|r| {
            format!("{:.1}", r.changes[i].3)
        });
    }
}

const CHANGE_KINDS: [&str; 3] = [
    "selector policy: principal changed",
    "selector policy: moved to another Service",
    "namespace policy: IP block changed",
];

struct Row {
    pods: usize,
    authorizations: usize,
    build_plain: Duration,
    build_policies: Duration,
    /// Per change kind: median µs, p90 µs, names changed (addresses + authorizations) per apply, and
    /// median µs per changed name.
    changes: Vec<(f64, f64, String, f64)>,
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1e3)
}

/// Parses one generated object (`None` for a kind the model does not read). Generated objects always
/// parse, so a failure is a generator bug and panics with the object's name.
fn parse_generated(value: Value) -> Option<Object> {
    let name = format!(
        "{}/{}/{}",
        value["kind"].as_str().unwrap_or("?"),
        value["metadata"]["namespace"].as_str().unwrap_or(""),
        value["metadata"]["name"].as_str().unwrap_or("?"),
    );
    match Object::from_value(value) {
        Ok(obj) => obj,
        Err(e) => panic!("generator bug: {name} does not parse: {e}"),
    }
}

fn best_build(objects: &[Object]) -> (Duration, Index) {
    let mut best = Duration::MAX;
    let mut index = None;
    for _ in 0..3 {
        let input = objects.to_vec();
        let start = Instant::now();
        let built = Index::build(Settings::default(), input);
        best = best.min(start.elapsed());
        index = Some(built);
    }
    (
        best,
        index.unwrap_or_else(|| Index::new(Settings::default())),
    )
}

fn run(pods: usize, policy_count: usize, changes: usize) -> Row {
    eprintln!("-- {pods} pods, {policy_count} policies");
    let spec = ClusterSpec {
        seed: SEED,
        ..ClusterSpec::new(pods)
    };
    let objects: Vec<Object> = ambient_testkit::generate(&spec)
        .into_iter()
        .filter_map(parse_generated)
        .collect();
    let policy_values = ambient_testkit::policies(&spec, policy_count);
    let policies: Vec<Object> = policy_values
        .iter()
        .cloned()
        .filter_map(parse_generated)
        .collect();
    let (build_plain, _) = best_build(&objects);
    let mut all = objects.clone();
    all.extend(policies.iter().cloned());
    let (build_policies, mut index) = best_build(&all);

    // Policies of each kind, by index in the generated list.
    let selector: Vec<usize> = (0..policy_count)
        .filter(|i| i % 50 != 49 && i % 5 < 3)
        .collect();
    let namespaced: Vec<usize> = (0..policy_count)
        .filter(|i| i % 50 != 49 && i % 5 == 4)
        .collect();
    let services = spec.services().max(1);
    // Each change applies on top of the policy's current state, so only the intended field differs.
    let mut current = policy_values.clone();
    let mut results = Vec::new();
    for kind in 0..CHANGE_KINDS.len() {
        let mut times = Vec::with_capacity(changes);
        let mut names = Vec::with_capacity(changes);
        for n in 0..changes {
            let pool = if kind == 2 { &namespaced } else { &selector };
            let Some(&i) = pool.get((n * 7919) % pool.len().max(1)) else {
                break;
            };
            let mut value = current[i].clone();
            match kind {
                0 => {
                    value["spec"]["rules"][0]["from"][0]["source"]["principals"][0] =
                        format!("cluster.local/ns/other/sa/changed-{n}").into();
                }
                1 => {
                    // Another Service of the policy's namespace; where the namespace has only one,
                    // alternate with a label no pod carries.
                    let ns = value["metadata"]["namespace"]
                        .as_str()
                        .unwrap_or("")
                        .to_string();
                    let now = value["spec"]["selector"]["matchLabels"]["app"]
                        .as_str()
                        .unwrap_or("")
                        .to_string();
                    let next = (0..services)
                        .map(|s| (s + n) % services)
                        .map(|s| (s, spec.service_name(s)))
                        .find(|(s, name)| {
                            *name != now && spec.namespace_name(spec.namespace_of_service(*s)) == ns
                        })
                        .map(|(_, name)| name);
                    let next = match next {
                        Some(name) => name,
                        None if now.starts_with("unused-") => policy_values[i]["spec"]["selector"]
                            ["matchLabels"]["app"]
                            .as_str()
                            .unwrap_or("")
                            .to_string(),
                        None => format!("unused-{n}"),
                    };
                    value["spec"]["selector"]["matchLabels"]["app"] = next.into();
                }
                _ => {
                    value["spec"]["rules"][0]["from"][0]["source"]["ipBlocks"][0] =
                        format!("198.51.{}.0/24", n % 256).into();
                }
            }
            current[i] = value.clone();
            let Some(obj) = parse_generated(value) else {
                continue;
            };
            let start = Instant::now();
            let changed: Changes = index.apply(obj);
            times.push(start.elapsed());
            names.push(
                changed.addresses.changed.len()
                    + changed.addresses.removed.len()
                    + changed.authorizations.changed.len()
                    + changed.authorizations.removed.len(),
            );
        }
        times.sort();
        let pct = |p: f64| {
            times
                .get(((times.len() as f64 - 1.0) * p) as usize)
                .map_or(0.0, |d| d.as_secs_f64() * 1e6)
        };
        names.sort();
        let names_summary = match (names.first(), names.last()) {
            (Some(lo), Some(hi)) if lo == hi => lo.to_string(),
            (Some(lo), Some(hi)) => format!("{lo}–{hi} (median {})", names[names.len() / 2]),
            _ => "-".to_string(),
        };
        let per_name = pct(0.5) / names.get(names.len() / 2).copied().unwrap_or(1).max(1) as f64;
        results.push((pct(0.5), pct(0.9), names_summary, per_name));
    }
    Row {
        pods,
        authorizations: index.authorizations().len(),
        build_plain,
        build_policies,
        changes: results,
    }
}
