//! The topology and runbook `drctl lab up` writes for the lab, so every
//! drctl command can be pointed at it.

use super::*;

pub(super) fn write(path: &Path, text: &str) -> Result<(), Error> {
    std::fs::write(path, text).map_err(|e| Error::Io(format!("cannot write {}: {e}", path.display())))
}

/// The lab's topology, in the same format users write.
/// `backup_repo`: orders-db is backed up by pgBackRest into this folder,
/// standing in lab-az3 (none where pgBackRest is not installed).
pub fn topology_yaml(l: &Layout, fence_program: Option<&Path>, backup_repo: Option<&Path>) -> String {
    // Each member's fence powers it off through the control API, out of band.
    // Its `check` asks the same API, powering nothing off (readiness runs it).
    let fence = |z: u8| match fence_program {
        Some(exe) => {
            let args = format!(
                "{}, lab, power-off, --control, \"{}\", --datastore, orders-db, --zone, {}",
                serde_json::to_string(&exe.display().to_string()).unwrap_or_default(),
                l.control(),
                ZONES[z as usize - 1]
            );
            format!(", fence: {{ command: [{args}], check: [{args}, --check] }}")
        }
        None => String::new(),
    };
    let mut y = String::new();
    y.push_str(drctl_lab_api::TOPOLOGY_MARK);
    y.push_str(": the lab on loopback. Edit freely; `lab up` writes it anew.\n");
    y.push_str("version: 1\nname: lab\n\nzones:\n");
    for z in ZONES {
        y.push_str(&format!("  - {{ name: {z}, region: lab }}\n"));
    }
    y.push_str("\nobjectives:\n  tier-0: { rpo: 5s, rto: 30s, restore: { rpo: 5m, rto: 2m } }\n  tier-1: { rpo: 30s, rto: 2m, restore: { rpo: 5m, rto: 5m } }\n\n");
    y.push_str("contracts:\n  - customer: example-bank\n    services: [payments]\n    rpo: 2s\n    rto: 20s\n\n");
    y.push_str("datastores:\n");
    y.push_str(&format!(
        "  - name: orders-db\n    kind: postgres\n    primary: {{ zone: lab-az1, url: \"{}\"{} }}\n    replicas:\n      - {{ zone: lab-az2, url: \"{}\"{} }}\n    failover: {{ estimate: 3s, max_lag: 10s }}\n",
        l.pg_url(1),
        fence(1),
        l.pg_url(2),
        fence(2)
    ));
    if let Some(repo) = backup_repo {
        y.push_str(&format!(
            "    backup: {{ tool: pgbackrest, repo: {{ zone: lab-az3, path: {} }} }}\n",
            serde_json::to_string(&repo.display().to_string()).unwrap_or_default()
        ));
    }
    y.push_str("  - name: assets\n    kind: s3\n");
    y.push_str(&format!("    primary: {{ zone: lab-az1, bucket: lab-assets-az1, endpoint: \"{}\" }}\n", l.s3_url(1)));
    y.push_str("    replicas:\n");
    for z in 2..=3 {
        y.push_str(&format!(
            "      - {{ zone: lab-az{z}, bucket: lab-assets-az{z}, endpoint: \"{}\" }}\n",
            l.s3_url(z)
        ));
    }
    y.push_str(
        "    replication: { by: drctl, every: 1s }\n    failover: { estimate: 2s }\n    backup: { versions: 1d }\n\n",
    );
    y.push_str("services:\n");
    for (i, (name, tier, zones, deps)) in SERVICES.iter().enumerate() {
        let zone_list: Vec<&str> = zones.iter().map(|z| ZONES[*z as usize - 1]).collect();
        y.push_str(&format!(
            "  - name: {name}\n    tier: {tier}\n    zones: [{}]\n    depends_on: [{}]\n",
            zone_list.join(", "),
            deps.join(", ")
        ));
        y.push_str(&format!("    health: {{ url: \"http://{}/health\", timeout: 2s }}\n", l.front_door(i)));
        y.push_str(&format!(
            "    route:\n      kind: lab-dns\n      server: \"{}\"\n      name: {name}.{DNS_ZONE}\n      type: A\n      ttl: 1\n      records: {{ {} }}\n",
            l.dns(),
            zones
                .iter()
                .map(|z| format!("{}: {}", ZONES[*z as usize - 1], l.service(*z, i).0.ip()))
                .collect::<Vec<_>>()
                .join(", ")
        ));
        if *name == "payments" {
            y.push_str("    failover: { runbook: runbooks/payments.yaml }\n");
        } else {
            y.push_str("    failover: { estimate: 2s }\n");
        }
    }
    y
}

pub(super) fn payments_runbook(l: &Layout) -> String {
    format!(
        "# Written by `drctl lab up`. The payments service's own failover: switch\n\
         # its DNS record, then prove it healthy through its front door.\n\
         name: payments-failover\n\
         steps:\n\
         \x20 - id: route\n\
         \x20   action: dns.failover\n\
         \x20   with: {{ service: payments }}\n\
         \x20   estimate: 1s\n\
         \x20 - id: verify\n\
         \x20   action: http.health\n\
         \x20   with: {{ url: \"http://{}/health\", within: 20s }}\n\
         \x20   needs: [route]\n\
         \x20   estimate: 1s\n",
        l.front_door(0)
    )
}
