//! The Terraform demo's topology and policy, kept true to drctl: the
//! demo's `drctl.yaml.tftpl`, rendered with sample values, validates; and
//! `drctl-policy.json.tftpl`, the policy the module gives the controllers,
//! is exactly what `drctl iam-policy --for serve` prints for it. Run with
//! `DRCTL_UPDATE_TERRAFORM=1` to write the policy template anew after a
//! change to drctl's calls.

use std::path::{Path, PathBuf};
use std::process::Command;

fn demo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../terraform/examples/demo")
}

/// Sample values for the templates' placeholders, longest first (a bucket
/// name holds the account id).
const SAMPLES: &[(&str, &str)] = &[
    ("bucket_a", "drctl-demo-assets-a-123456789012"),
    ("bucket_b", "drctl-demo-assets-b-123456789012"),
    ("record_name", "pay.demo.example.com"),
    ("record", "pay.demo.example.com."),
    ("zone_id", "Z0123456789ABCDEFGHIJ"),
    ("db_a", "drctl-demo-ledger-a"),
    ("db_b", "drctl-demo-ledger-b"),
    ("account", "123456789012"),
    ("region", "eu-west-1"),
    ("az_a", "eu-west-1a"),
    ("az_b", "eu-west-1b"),
];

fn render(template: &str) -> String {
    let mut out = template.to_string();
    for (k, v) in SAMPLES {
        out = out.replace(&format!("${{{k}}}"), v);
    }
    assert!(!out.contains("${"), "a placeholder without a sample value:\n{out}");
    out
}

fn drctl(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_drctl"))
        .args(args)
        .current_dir(dir)
        .env_remove("DRCTL_STATE")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[test]
fn the_demo_topology_validates_and_its_policy_is_what_drctl_prints() {
    let dir = std::env::temp_dir().join(format!("drctl-terraform-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let yaml = render(&std::fs::read_to_string(demo().join("drctl.yaml.tftpl")).unwrap());
    std::fs::write(dir.join("drctl.yaml"), &yaml).unwrap();
    let (code, out, err) = drctl(&dir, &["validate", "-f", "drctl.yaml"]);
    assert_eq!(code, 0, "the demo's topology validates:\n{yaml}\n{out}\n{err}");
    let (code, printed, err) =
        drctl(&dir, &["iam-policy", "-f", "drctl.yaml", "--for", "serve", "--account", "123456789012"]);
    assert_eq!(code, 0, "{err}");
    let template_path = demo().join("drctl-policy.json.tftpl");
    if std::env::var_os("DRCTL_UPDATE_TERRAFORM").is_some() {
        let mut t = printed.clone();
        for (k, v) in SAMPLES {
            t = t.replace(v, &format!("${{{k}}}"));
        }
        std::fs::write(&template_path, t).unwrap();
    }
    let template =
        std::fs::read_to_string(&template_path).expect("drctl-policy.json.tftpl (DRCTL_UPDATE_TERRAFORM=1 writes it)");
    let in_module: serde_json::Value = serde_json::from_str(&render(&template)).unwrap();
    let now: serde_json::Value = serde_json::from_str(&printed).unwrap();
    assert_eq!(
        in_module, now,
        "the demo's policy is not what `drctl iam-policy` prints now: run this test with DRCTL_UPDATE_TERRAFORM=1 and review the change"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
