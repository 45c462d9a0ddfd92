//! The virtual network: one Linux network namespace per member, each with loopback up and a
//! veth pair into one bridge in the root namespace, addresses `198.18.<s>.<n>/24` (a subnet
//! of 198.18.0.0/15, the benchmarking range, and nothing else) with the bridge holding `.1`,
//! so the test process reaches every member.
//!
//! Names are unique per test run: namespaces are `apogee-<pid>-<k>-<member>`; the bridge
//! (`apgbr<s>`) and veths (`apg<s>v<n>`) are named by the subnet, and creating the bridge is
//! what claims a subnet, so two test processes at once never share one. Links carry the
//! alias `apogee-test <pid>`. Drop deletes the veths, namespaces and bridge, also while
//! the test panics; a network left behind by a killed test process is deleted by the next
//! one that starts (its pid no longer exists).
//!
//! Faults: a member's links down and up ([`Network::links_down`]), and a member cut off
//! from some peers (nftables drop rules in its namespace, [`Network::cut_off`]).

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// Subnets of 198.18.0.0/15: `198.(18 + s / 256).(s % 256).0/24`.
const SUBNETS: u32 = 512;

/// Members per network: `.2` to `.254`.
const MAX_MEMBERS: usize = 253;

/// The alias on every link this harness makes, followed by the owner's pid.
const ALIAS: &str = "apogee-test";

/// The nftables table a cut adds in a member's namespace.
const CUT_TABLE: &str = "apogee_cut";

/// Networks made by this process (part of their namespaces' names).
static NETWORKS: AtomicU32 = AtomicU32::new(0);

/// Path of a system tool (`ip`, `nft`) in the usual sbin and bin directories.
pub fn tool(name: &str) -> Option<PathBuf> {
    ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]
        .iter()
        .map(|d| PathBuf::from(d).join(name))
        .find(|p| p.is_file())
}

/// Runs a system tool; its stdout, or an error with the command line and its stderr.
pub fn run(name: &str, args: &[&str]) -> Result<String, String> {
    let path = tool(name).ok_or_else(|| format!("`{name}` is not installed"))?;
    let out = Command::new(&path)
        .args(args)
        .output()
        .map_err(|e| format!("cannot run {}: {e}", path.display()))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "`{name} {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Runs `ip` and panics with its error.
fn ip(args: &[&str]) -> String {
    run("ip", args).unwrap_or_else(|e| panic!("{e}"))
}

/// Whether process `pid` exists.
fn alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// Deletes namespaces and links a test process that no longer runs left behind.
fn sweep_stale() {
    if let Ok(list) = run("ip", &["netns", "list"]) {
        for ns in list.lines().filter_map(|l| l.split_whitespace().next()) {
            let pid = ns
                .strip_prefix("apogee-")
                .and_then(|rest| rest.split('-').next())
                .and_then(|p| p.parse::<u32>().ok());
            if pid.is_some_and(|p| !alive(p)) {
                let _ = run("ip", &["netns", "del", ns]);
            }
        }
    }
    if let Ok(links) = run("ip", &["-o", "link", "show"]) {
        for line in links.lines() {
            let Some(pid) = line
                .split(&format!("alias {ALIAS} "))
                .nth(1)
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|p| p.parse::<u32>().ok())
            else {
                continue;
            };
            // "<index>: <name>@<peer>: <flags> ..."
            let name = line.split(':').nth(1).map(str::trim).unwrap_or_default();
            let name = name.split('@').next().unwrap_or_default();
            if !alive(pid) && !name.is_empty() {
                let _ = run("ip", &["link", "del", name]);
            }
        }
    }
}

/// One member: its namespace, the root end of its veth, and its address.
#[derive(Clone, Debug)]
pub struct Member {
    pub name: String,
    pub netns: String,
    /// The veth end in the root namespace, enslaved to the bridge.
    pub veth: String,
    pub ip: Ipv4Addr,
}

/// A bridge with members; everything is deleted on drop.
pub struct Network {
    /// `<pid>-<k>`: the namespaces' common part.
    id: String,
    subnet: u32,
    bridge: String,
    members: Vec<Member>,
}

impl Network {
    /// Claims a free subnet and makes its bridge, holding `.1`.
    pub fn create() -> Network {
        let pid = std::process::id();
        let k = NETWORKS.fetch_add(1, Ordering::Relaxed);
        if k == 0 {
            sweep_stale();
        }
        let first = pid.wrapping_mul(31).wrapping_add(k) % SUBNETS;
        for i in 0..SUBNETS {
            let subnet = (first + i) % SUBNETS;
            let bridge = format!("apgbr{subnet}");
            let prefix = format!("{}/24", Self::address(subnet, 0));
            // A subnet some other interface of the machine uses is not ours to take.
            if run("ip", &["-o", "addr", "show", "to", &prefix]).is_ok_and(|o| !o.trim().is_empty())
            {
                continue;
            }
            // Creating the bridge is the claim: it fails if another process holds the name.
            if run(
                "ip",
                &[
                    "link",
                    "add",
                    &bridge,
                    "type",
                    "bridge",
                    "forward_delay",
                    "0",
                ],
            )
            .is_err()
            {
                continue;
            }
            let net = Network {
                id: format!("{pid}-{k}"),
                subnet,
                bridge,
                members: Vec::new(),
            };
            ip(&[
                "link",
                "set",
                "dev",
                &net.bridge,
                "alias",
                &format!("{ALIAS} {pid}"),
            ]);
            ip(&[
                "addr",
                "add",
                &format!("{}/24", net.gateway()),
                "dev",
                &net.bridge,
            ]);
            ip(&["link", "set", &net.bridge, "up"]);
            return net;
        }
        panic!("no free /24 in 198.18.0.0/15 for a test network");
    }

    fn address(subnet: u32, host: u8) -> Ipv4Addr {
        Ipv4Addr::new(198, 18 + (subnet / 256) as u8, (subnet % 256) as u8, host)
    }

    /// The bridge's address, the test process's on this network.
    pub fn gateway(&self) -> Ipv4Addr {
        Self::address(self.subnet, 1)
    }

    /// Adds a member: its namespace with loopback up, a veth pair into the bridge, the next
    /// address.
    pub fn add_member(&mut self, name: &str) -> &Member {
        assert!(
            self.members.iter().all(|m| m.name != name),
            "a member named {name} is already on the network"
        );
        assert!(
            self.members.len() < MAX_MEMBERS,
            "a test network holds at most {MAX_MEMBERS} members"
        );
        let n = self.members.len() + 2;
        let member = Member {
            name: name.to_string(),
            netns: format!("apogee-{}-{name}", self.id),
            veth: format!("apg{}v{n}", self.subnet),
            ip: Self::address(self.subnet, n as u8),
        };
        // Pushed first, so drop deletes whatever part of it was made.
        self.members.push(member.clone());
        let ns = member.netns.as_str();
        ip(&["netns", "add", ns]);
        ip(&["-n", ns, "link", "set", "lo", "up"]);
        ip(&[
            "link",
            "add",
            &member.veth,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            ns,
        ]);
        ip(&[
            "link",
            "set",
            "dev",
            &member.veth,
            "alias",
            &format!("{ALIAS} {}", std::process::id()),
        ]);
        ip(&["link", "set", &member.veth, "master", &self.bridge]);
        ip(&["link", "set", &member.veth, "up"]);
        ip(&[
            "-n",
            ns,
            "addr",
            "add",
            &format!("{}/24", member.ip),
            "dev",
            "eth0",
        ]);
        ip(&["-n", ns, "link", "set", "eth0", "up"]);
        self.members.last().expect("just pushed")
    }

    pub fn member(&self, name: &str) -> &Member {
        self.members
            .iter()
            .find(|m| m.name == name)
            .unwrap_or_else(|| panic!("no member named {name} on the network"))
    }

    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// The command line that runs `program` with `args` inside `member`'s namespace.
    pub fn exec_in(
        &self,
        member: &str,
        program: &std::path::Path,
        args: Vec<String>,
    ) -> (PathBuf, Vec<String>) {
        let ip = tool("ip").expect("ip is installed");
        let mut full = vec![
            "netns".to_string(),
            "exec".into(),
            self.member(member).netns.clone(),
        ];
        full.push(program.display().to_string());
        full.extend(args);
        (ip, full)
    }

    /// Sets `member`'s link down: it is cut off from everyone (the test process included);
    /// its connections hang rather than close.
    pub fn links_down(&self, member: &str) {
        ip(&["link", "set", &self.member(member).veth, "down"]);
    }

    /// Sets `member`'s link up again.
    pub fn links_up(&self, member: &str) {
        ip(&["link", "set", &self.member(member).veth, "up"]);
    }

    /// Cuts `member` off from `peers` (members of this network) both ways, and from nobody
    /// else: nftables rules in its namespace drop every packet to and from their addresses.
    /// Cuts add up until [`Network::reconnect`].
    pub fn cut_off(&self, member: &str, peers: &[&str]) {
        let ns = self.member(member).netns.clone();
        let nft = |args: &[&str]| {
            let mut full = vec!["netns", "exec", ns.as_str(), "nft"];
            full.extend_from_slice(args);
            ip(&full);
        };
        nft(&["add", "table", "inet", CUT_TABLE]);
        for (chain, hook) in [("in", "input"), ("out", "output")] {
            nft(&[
                "add",
                "chain",
                "inet",
                CUT_TABLE,
                chain,
                &format!("{{ type filter hook {hook} priority 0; }}"),
            ]);
        }
        for peer in peers {
            let addr = self.member(peer).ip.to_string();
            nft(&[
                "add", "rule", "inet", CUT_TABLE, "in", "ip", "saddr", &addr, "drop",
            ]);
            nft(&[
                "add", "rule", "inet", CUT_TABLE, "out", "ip", "daddr", &addr, "drop",
            ]);
        }
    }

    /// Removes every cut of `member`.
    pub fn reconnect(&self, member: &str) {
        let ns = self.member(member).netns.as_str();
        ip(&[
            "netns", "exec", ns, "nft", "delete", "table", "inet", CUT_TABLE,
        ]);
    }

    /// The names of what this network made in the root namespace and the namespace list
    /// (bridge, veths, namespaces), for tests of the cleanup.
    pub fn object_names(&self) -> Vec<String> {
        let mut names = vec![self.bridge.clone()];
        for m in &self.members {
            names.push(m.veth.clone());
            names.push(m.netns.clone());
        }
        names
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        // Deleting the root end of a veth deletes the pair; a namespace goes when its last
        // process has (the harness kills them before the network is dropped).
        for m in &self.members {
            let _ = run("ip", &["link", "del", &m.veth]);
            if let Err(e) = run("ip", &["netns", "del", &m.netns]) {
                eprintln!("test network: {e}");
            }
        }
        if let Err(e) = run("ip", &["link", "del", &self.bridge]) {
            eprintln!("test network: {e}");
        }
    }
}
