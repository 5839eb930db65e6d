//! Detecting what was lost: each service's health probe, and the scope
//! of a declaration (zones where nothing answers, primaries that are gone).

use super::*;

/// (zone, entity, URL) of every datastore member, for scope detection.
fn members(topo: &Topology) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for (_, e, d) in topo.datastores() {
        for m in d.primary.iter().chain(&d.replicas) {
            let url = match &m.location {
                Location::Postgres { url, .. } => url.clone(),
                Location::S3 { endpoint: Some(ep), .. } => ep.clone(),
                _ => continue,
            };
            out.push((topo.zones[m.zone].name.clone(), e.name.clone(), url));
        }
    }
    out
}

/// Whether a member answers its own protocol (a TCP handshake alone proves
/// little: the kernel completes it before any program accepts).
async fn reachable(url: &str) -> bool {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let probe = async {
            let c = drctl_providers::postgres::connect(url, SCOPE_PROBE_TIMEOUT).await.ok()?;
            Some(c.simple_query("SELECT 1").await.is_ok())
        };
        return matches!(tokio::time::timeout(SCOPE_PROBE_TIMEOUT, probe).await, Ok(Some(true)));
    }
    let client = reqwest::Client::builder().no_proxy().timeout(SCOPE_PROBE_TIMEOUT).build();
    match client {
        // Any HTTP answer (S3 says 403 to an unsigned request) means it is up.
        Ok(c) => c.get(url).send().await.is_ok(),
        Err(_) => false,
    }
}

/// Works out what was lost: zones where no member answers, else datastores whose primary is gone.
pub(super) async fn detect_scope(topo: &Topology, state: &State) -> (Vec<String>, Vec<String>) {
    let addrs = members(topo);
    let results = futures::future::join_all(addrs.iter().map(|(_, _, url)| reachable(url))).await;
    let mut zones = Vec::new();
    for z in &topo.zones {
        let mine: Vec<bool> =
            addrs.iter().zip(&results).filter(|((zn, _, _), _)| *zn == z.name).map(|(_, r)| *r).collect();
        if !mine.is_empty() && mine.iter().all(|r| !r) {
            zones.push(z.name.clone());
        }
    }
    let placements = state.placements().unwrap_or_default();
    let mut targets = Vec::new();
    for (_, e, d) in topo.datastores() {
        let primary_zone = placements
            .iter()
            .find(|(n, _)| *n == e.name)
            .map(|(_, z)| z.clone())
            .or_else(|| d.primary.as_ref().map(|p| topo.zones[p.zone].name.clone()));
        let Some(pz) = primary_zone else { continue };
        if zones.contains(&pz) {
            continue;
        }
        let down = addrs
            .iter()
            .zip(&results)
            .filter(|((zn, name, _), _)| *name == e.name && *zn == pz)
            .map(|(_, r)| *r)
            .collect::<Vec<_>>();
        if !down.is_empty() && down.iter().all(|r| !r) {
            targets.push(e.name.clone());
        }
    }
    (zones, targets)
}

pub(super) struct Probe {
    pub(super) name: String,
    pub(super) url: String,
    /// The service's own health timeout (topology `health.timeout`).
    pub(super) timeout: Duration,
    pub(super) fails: u32,
    pub(super) unhealthy_at: Option<f64>,
    pub(super) recovered_at: Option<f64>,
    pub(super) healthy_now: bool,
}

impl Probe {
    /// A probe for every service with a health check, healthy until shown otherwise.
    pub(super) fn of(topo: &Topology) -> Vec<Probe> {
        topo.services()
            .filter_map(|(_, e, s)| {
                // What users reach: the shared URL, else the preferred zone's.
                let h = s.health.as_ref()?;
                let url = h.serving_url(s.zones.first().copied())?;
                Some(Probe {
                    name: e.name.clone(),
                    url: url.to_string(),
                    timeout: h.timeout,
                    fails: 0,
                    unhealthy_at: None,
                    recovered_at: None,
                    healthy_now: true,
                })
            })
            .collect()
    }
}
