//! A pre-fork HTTP server handed over again and again under load, without a failed request.

use super::*;

fn web(version: &str) -> Value {
    json!([{"name": "web", "workers": 4, "argv": ["python3", prefork_server().to_str().unwrap()],
            "readiness": "sd_notify", "restart": "on-failure",
            "listen": [{"name": "http", "tcp": "127.0.0.1:0"}], "env": {"VERSION": version}}])
}

/// What the client got: answers by version, and the failures.
#[derive(Default, Debug)]
struct Tally {
    ok: u64,
    failed: Vec<String>,
    versions: std::collections::BTreeMap<String, u64>,
}

/// Sends requests back to back on two threads until `stop`; counts the answers of version 2 in
/// `new`.
fn load(
    address: SocketAddr,
    stop: Arc<AtomicBool>,
    new: Arc<AtomicU64>,
) -> Vec<std::thread::JoinHandle<Tally>> {
    (0..2)
        .map(|_| {
            let (stop, new) = (Arc::clone(&stop), Arc::clone(&new));
            std::thread::spawn(move || {
                let mut t = Tally::default();
                while !stop.load(Ordering::Relaxed) {
                    match http_get(address, "/") {
                        Ok(body) => {
                            t.ok += 1;
                            let version = body.split(' ').next().unwrap_or("").to_string();
                            if version == "2" {
                                new.fetch_add(1, Ordering::Relaxed);
                            }
                            *t.versions.entry(version).or_default() += 1;
                        }
                        Err(e) => t.failed.push(e.to_string()),
                    }
                }
                t
            })
        })
        .collect()
}

/// Zero failed requests: a host serving HTTP through a listen-socket group of pre-fork workers
/// hands them to its next image every second (`MPSUP_HANDOVER_ROUNDS` times, 10 by default;
/// 60 is the full minute of API.md part 9) while a client sends requests in a loop, then rolls
/// them out to a new version. No request fails; the workers' pids never change across the
/// handovers.
#[test]
fn a_prefork_http_server_is_handed_over_without_a_failed_request() {
    let rounds: u32 = std::env::var("MPSUP_HANDOVER_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(10);
    let killer = Killer::default();
    let config2 = web("2").to_string();
    let env = [("GROUP", "web"), ("CONFIG2", config2.as_str())];
    let rounds_text = rounds.to_string();
    let mut run = Run::start_with("http", &web("1").to_string(), &rounds_text, &env);
    let first = pids(&run.json("SNAPSHOT"), "web");
    killer.add(&first);
    assert_eq!(first.len(), 4);
    let status = run.json("STATUS");
    let address: SocketAddr = status["groups"]["web"]["listen"][0]["address"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let new = Arc::new(AtomicU64::new(0));
    let clients = load(address, Arc::clone(&stop), Arc::clone(&new));
    let started = Instant::now();
    for round in 0..=rounds {
        run.until("ADOPTED");
        let now = pids(&run.json("SNAPSHOT"), "web");
        assert_eq!(now, first, "after handover {round}");
    }
    run.until("ROLLED");
    let handing = started.elapsed();
    // The client goes on until answers of the new version came.
    let until = Instant::now() + HANG;
    while new.load(Ordering::Relaxed) < 100 && Instant::now() < until {
        std::thread::yield_now();
    }
    stop.store(true, Ordering::Relaxed);
    let tallies: Vec<Tally> = clients.into_iter().map(|c| c.join().unwrap()).collect();
    writeln!(run.host.child().stdin.as_mut().unwrap(), "go").unwrap();
    let snapshot = run.json("SNAPSHOT");
    killer.add(&pids(&snapshot, "web"));
    // The new build's workers (an old one may still be finishing its graceful stop).
    let after = ready_pids_of(&snapshot, "web");
    assert_eq!(after.len(), 4, "{snapshot}");
    run.until("DONE");
    assert_eq!(run.exit_code(), Some(0));
    let failed: Vec<&String> = tallies.iter().flat_map(|t| &t.failed).collect();
    let ok: u64 = tallies.iter().map(|t| t.ok).sum();
    let v2: u64 = tallies
        .iter()
        .map(|t| t.versions.get("2").copied().unwrap_or(0))
        .sum();
    eprintln!(
        "{rounds} handovers in {handing:?}: {ok} requests answered, {} failed",
        failed.len()
    );
    assert!(failed.is_empty(), "{} failed: {failed:?}", failed.len());
    assert!(ok > u64::from(rounds), "too few requests: {ok}");
    assert!(v2 >= 100, "too few answers of the new version: {tallies:?}");
    assert!(
        after.iter().all(|p| !first.contains(p)),
        "{first:?} {after:?}"
    );
}
