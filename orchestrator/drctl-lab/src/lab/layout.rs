//! Where everything of the lab listens: zones, ports and addresses (the
//! table in the module documentation of [`super`]).

use super::*;

pub const DEFAULT_BASE_PORT: u16 = 24300;
pub const ZONES: [&str; 3] = ["lab-az1", "lab-az2", "lab-az3"];
pub const DNS_ZONE: &str = "lab.";

/// The lab's services: name, tier, zones (1-based), dependencies.
pub(super) const SERVICES: &[(&str, &str, &[u8], &[&str])] = &[
    ("payments", "tier-0", &[1, 2], &["orders-db"]),
    ("checkout", "tier-0", &[1, 2], &["payments", "orders-db", "assets"]),
    ("catalog", "tier-1", &[1, 2, 3], &["assets"]),
];

/// Addresses of everything, from the base port.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Layout {
    pub base: u16,
}

pub(super) fn zone_ip(z: u8, host: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, z, host))
}

impl Layout {
    pub fn control(&self) -> SocketAddr {
        SocketAddr::new(zone_ip(0, 1), self.base)
    }
    pub fn dns(&self) -> SocketAddr {
        SocketAddr::new(zone_ip(0, 1), self.base + 53)
    }
    pub fn pg(&self, z: u8) -> (SocketAddr, SocketAddr) {
        (SocketAddr::new(zone_ip(z, 1), self.base + 32), SocketAddr::new(zone_ip(z, 1), self.base + 33))
    }
    /// Where PostgreSQL in zone `z` reaches the member in zone `t` (its
    /// replication connection speaks for zone `z`).
    pub fn pg_egress(&self, z: u8, t: u8) -> SocketAddr {
        SocketAddr::new(zone_ip(z, 3), self.base + 40 + u16::from(t))
    }
    pub fn s3(&self, z: u8) -> (SocketAddr, SocketAddr) {
        (SocketAddr::new(zone_ip(z, 2), self.base + 90), SocketAddr::new(zone_ip(z, 2), self.base + 91))
    }
    pub fn service(&self, z: u8, i: usize) -> (SocketAddr, SocketAddr) {
        let ip = zone_ip(z, 10 + i as u8);
        (SocketAddr::new(ip, self.base + 80), SocketAddr::new(ip, self.base + 81))
    }
    pub fn front_door(&self, i: usize) -> SocketAddr {
        SocketAddr::new(zone_ip(0, 1), self.base + 60 + i as u16)
    }
    pub(super) fn every_tcp_address(&self) -> Vec<SocketAddr> {
        let mut all = vec![self.control()];
        for z in 1..=3 {
            let (a, b) = self.s3(z);
            all.extend([a, b]);
        }
        for z in 1..=2 {
            let (a, b) = self.pg(z);
            all.extend([a, b, self.pg_egress(z, 3 - z)]);
        }
        for (i, (_, _, zones, _)) in SERVICES.iter().enumerate() {
            all.push(self.front_door(i));
            for z in zones.iter() {
                let (a, b) = self.service(*z, i);
                all.extend([a, b]);
            }
        }
        all
    }
    pub fn pg_url(&self, z: u8) -> String {
        format!("postgres://postgres@{}/lab", self.pg(z).0)
    }
    pub fn pg_conninfo(&self) -> String {
        let (a1, a2) = (self.pg(1).0, self.pg(2).0);
        format!(
            "host={},{} port={},{} user=postgres dbname=lab target_session_attrs=read-write connect_timeout=1",
            a1.ip(),
            a2.ip(),
            a1.port(),
            a2.port()
        )
    }
    pub fn s3_url(&self, z: u8) -> String {
        format!("http://{}", self.s3(z).0)
    }
}

pub(super) fn zone_name(z: u8) -> String {
    ZONES[z as usize - 1].to_string()
}
