//! Route53: pointing a record at the zones that survive.
//!
//! A change is an UPSERT followed by a wait until Route53 reports it
//! `INSYNC`, so "switched" means what DNS actually serves. Every switch
//! reads the record first and does nothing when it already answers the
//! wanted values, so running it twice does no harm.

use crate::iam::{Grant, On, Use};
use crate::{api_error, Error, Result};
use aws_sdk_route53::types::{
    Change, ChangeAction, ChangeBatch, ChangeStatus, ResourceRecord, ResourceRecordSet, RrType,
};
use aws_sdk_route53::Client;
use std::time::Duration;

pub fn client(shared: &aws_config::SdkConfig) -> Client {
    Client::new(shared)
}

fn fqdn(name: &str) -> String {
    if name.ends_with('.') {
        name.to_string()
    } else {
        format!("{name}.")
    }
}

/// `ListResourceRecordSets` (and `GetHostedZone` in the preflight).
pub const READ_RECORDS: Grant = Grant {
    sid: "Route53ReadRecords",
    actions: &["route53:ListResourceRecordSets", "route53:GetHostedZone"],
    on: On::HostedZones,
    uses: &[Use::Declare],
};

/// The values a record answers now, when it exists.
pub async fn current(client: &Client, zone_id: &str, name: &str, rtype: &str) -> Result<Option<Vec<String>>> {
    let name = fqdn(name);
    let out = client
        .list_resource_record_sets()
        .hosted_zone_id(zone_id)
        .start_record_name(&name)
        .start_record_type(RrType::from(rtype))
        .max_items(1)
        .send()
        .await
        .map_err(|e| api_error(format!("reading {name} in hosted zone {zone_id}"), &e))?;
    Ok(out.resource_record_sets().iter().find(|r| fqdn(r.name()) == name && r.r#type().as_str() == rtype).map(|r| {
        let mut v: Vec<String> = r.resource_records().iter().map(|x| x.value().to_string()).collect();
        v.sort();
        v
    }))
}

/// `ChangeResourceRecordSets`: UPSERT of the topology's records only.
pub const CHANGE_RECORDS: Grant = Grant {
    sid: "Route53ChangeRecords",
    actions: &["route53:ChangeResourceRecordSets"],
    on: On::RecordChanges,
    uses: &[Use::Declare],
};

/// `GetChange`: waiting until a change is `INSYNC`.
pub const WAIT_FOR_CHANGE: Grant =
    Grant { sid: "Route53WaitForChanges", actions: &["route53:GetChange"], on: On::Changes, uses: &[Use::Declare] };

/// Makes the record answer `values`; returns what was done.
pub async fn upsert(
    client: &Client,
    zone_id: &str,
    name: &str,
    rtype: &str,
    ttl: i64,
    values: &[String],
    wait: Duration,
) -> Result<String> {
    let mut wanted: Vec<String> = values.to_vec();
    wanted.sort();
    if current(client, zone_id, name, rtype).await?.as_deref() == Some(&wanted[..]) {
        return Ok(format!("{name} already answers {}", wanted.join(", ")));
    }
    let records: Vec<ResourceRecord> = wanted
        .iter()
        .map(|v| ResourceRecord::builder().value(v).build().map_err(|e| Error::Config(e.to_string())))
        .collect::<Result<_>>()?;
    let set = ResourceRecordSet::builder()
        .name(fqdn(name))
        .r#type(RrType::from(rtype))
        .ttl(ttl)
        .set_resource_records(Some(records))
        .build()
        .map_err(|e| Error::Config(e.to_string()))?;
    let change = Change::builder()
        .action(ChangeAction::Upsert)
        .resource_record_set(set)
        .build()
        .map_err(|e| Error::Config(e.to_string()))?;
    let batch = ChangeBatch::builder()
        .changes(change)
        .comment("drctl failover")
        .build()
        .map_err(|e| Error::Config(e.to_string()))?;
    let out = client
        .change_resource_record_sets()
        .hosted_zone_id(zone_id)
        .change_batch(batch)
        .send()
        .await
        .map_err(|e| api_error(format!("updating {name} in hosted zone {zone_id}"), &e))?;
    let change_id = out.change_info().map(|c| c.id().to_string()).unwrap_or_default();
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let status = client
            .get_change()
            .id(&change_id)
            .send()
            .await
            .map_err(|e| api_error(format!("waiting for change {change_id}"), &e))?
            .change_info()
            .map(|c| c.status().clone());
        if status == Some(ChangeStatus::Insync) {
            return Ok(format!("{name} answers {} (INSYNC)", wanted.join(", ")));
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(Error::Api {
                what: format!("waiting for change {change_id}"),
                why: format!("not INSYNC within {}s", wait.as_secs()),
                transient: true,
            });
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// Every permission this module's calls need.
pub const PERMISSIONS: &[Grant] = &[READ_RECORDS, CHANGE_RECORDS, WAIT_FOR_CHANGE];
