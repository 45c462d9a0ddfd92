//! RocketMQ 4's ACL accounts (`plain_acl.yml`, kept beside broker.conf) for `apogee config
//! import`: [`parse`] reads its accounts, [`commands`] gives the `apogee user` and `apogee acl`
//! commands that recreate them on an Apogee cluster.
//!
//! The reader takes the block-style YAML RocketMQ ships and documents (`accounts:` a list of
//! `key: value` maps, `topicPerms:`/`groupPerms:` lists of `name=PERM`; comments, quoted
//! scalars); anything else (flow collections, anchors, multi-line scalars) is an error naming
//! the line, and the operator is told what to do by hand instead.
//!
//! RocketMQ's rule, per account: a resource's own entry wins, else the default perm applies.
//! Apogee's: deny entries win, allows add up, nothing matching is refused, one entry per
//! resource pattern. A default perm becomes an allow on `*`; a resource's own perm becomes the
//! allow it adds or the deny of what it takes away. A perm that both adds and takes away
//! (default `PUB`, a topic `SUB`) cannot be one entry: its allow is given and the lost deny is
//! said in a comment.

/// The actions of a RocketMQ perm: (publish, subscribe).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Perm {
    pub publish: bool,
    pub subscribe: bool,
}

const DENY: Perm = Perm {
    publish: false,
    subscribe: false,
};

impl Perm {
    /// `DENY`, `PUB`, `SUB`, `PUB|SUB` (either order) or `ANY` (RocketMQ: publish or
    /// subscribe).
    fn parse(s: &str) -> Option<Perm> {
        let mut perm = DENY;
        match s.trim().to_ascii_uppercase().as_str() {
            "DENY" => return Some(DENY),
            "ANY" => {
                return Some(Perm {
                    publish: true,
                    subscribe: true,
                })
            }
            other => {
                for part in other.split('|').map(str::trim) {
                    match part {
                        "PUB" => perm.publish = true,
                        "SUB" => perm.subscribe = true,
                        _ => return None,
                    }
                }
            }
        }
        Some(perm)
    }

    fn is_empty(self) -> bool {
        !self.publish && !self.subscribe
    }

    /// The actions of `self` that `other` lacks.
    fn minus(self, other: Perm) -> Perm {
        Perm {
            publish: self.publish && !other.publish,
            subscribe: self.subscribe && !other.subscribe,
        }
    }

    /// As `apogee acl grant --actions` spells it.
    fn actions(self) -> &'static str {
        match (self.publish, self.subscribe) {
            (true, true) => "pub,sub",
            (true, false) => "pub",
            _ => "sub",
        }
    }
}

/// One account of plain_acl.yml.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Account {
    pub access_key: String,
    pub admin: bool,
    pub default_topic: Option<Perm>,
    pub default_group: Option<Perm>,
    pub topics: Vec<(String, Perm)>,
    pub groups: Vec<(String, Perm)>,
    /// Whether it names a `whiteRemoteAddress` (an address allow-list).
    pub address_list: bool,
    /// Its `secretKey`: kept only to recreate the user with it (`import-state --apply`, so
    /// applications keep signing with their keys), never printed.
    pub secret_key: SecretKey,
}

/// A secret key that never shows in output or logs.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SecretKey(pub String);

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_empty() {
            "<none>"
        } else {
            "<secret>"
        })
    }
}

/// What plain_acl.yml holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AclFile {
    pub accounts: Vec<Account>,
    /// Whether it has `globalWhiteRemoteAddresses` entries.
    pub global_address_list: bool,
}

/// Reads plain_acl.yml; errors say `line N: ...`.
pub fn parse(text: &str) -> Result<AclFile, String> {
    let mut file = AclFile::default();
    let mut section = "";
    let mut item_indent = None;
    // The account being read and the list key its `- ` lines belong to.
    let mut list_key = String::new();
    for (i, raw) in text.lines().enumerate() {
        let bad = |m: &str| format!("line {}: {m}", i + 1);
        let line = strip_comment(raw);
        if line.trim().is_empty() || line.trim() == "---" {
            continue;
        }
        let indent = line.len() - line.trim_start().len();
        let content = line.trim();
        if indent == 0 && !content.starts_with('-') {
            let Some((key, value)) = content.split_once(':') else {
                return Err(bad("expected `key:`"));
            };
            section = match key.trim() {
                "accounts" if !unquote(value).is_empty() => {
                    return Err(bad("accounts: expected a `- ` list on the lines below"));
                }
                "accounts" => "accounts",
                "globalWhiteRemoteAddresses" => {
                    file.global_address_list |= !unquote(value).is_empty();
                    "global"
                }
                _ => "other",
            };
            item_indent = None;
            continue;
        }
        match section {
            "global" => file.global_address_list = true,
            "accounts" => {
                let item = content
                    .strip_prefix("- ")
                    .or_else(|| content.strip_prefix('-'));
                let starts_account = item.is_some() && item_indent.is_none_or(|n| n == indent);
                if starts_account {
                    item_indent = Some(indent);
                    file.accounts.push(Account::default());
                    list_key.clear();
                    let rest = item.unwrap_or_default().trim();
                    if !rest.is_empty() {
                        account_key(file.accounts.last_mut(), rest, &mut list_key)
                            .map_err(|m| bad(&m))?;
                    }
                } else if item_indent.is_none_or(|n| indent < n) {
                    return Err(bad("expected an account (`- accessKey: ...`)"));
                } else if let Some(entry) = item {
                    let account = file.accounts.last_mut();
                    resource_perm(account, &list_key, entry).map_err(|m| bad(&m))?;
                } else {
                    account_key(file.accounts.last_mut(), content, &mut list_key)
                        .map_err(|m| bad(&m))?;
                }
            }
            _ => {}
        }
    }
    for (n, a) in file.accounts.iter().enumerate() {
        if a.access_key.is_empty() {
            return Err(format!("account {} has no accessKey", n + 1));
        }
    }
    Ok(file)
}

/// Drops a `#` comment (at the start or after a blank, outside quotes).
fn strip_comment(line: &str) -> &str {
    let mut quote = None;
    let mut prev_blank = true;
    for (i, c) in line.char_indices() {
        match (quote, c) {
            (None, '\'' | '"') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, '#') if prev_blank => return &line[..i],
            _ => {}
        }
        prev_blank = c.is_whitespace();
    }
    line
}

fn unquote(value: &str) -> String {
    let v = value.trim();
    for q in ['\'', '"'] {
        if let Some(inner) = v.strip_prefix(q).and_then(|v| v.strip_suffix(q)) {
            return inner.to_string();
        }
    }
    v.to_string()
}

/// One `key: value` line of an account.
fn account_key(
    account: Option<&mut Account>,
    line: &str,
    list_key: &mut String,
) -> Result<(), String> {
    let account = account.ok_or("a key before the first account")?;
    let (key, value) = line
        .split_once(':')
        .ok_or_else(|| format!("expected `key: value`, found {line:?}"))?;
    let (key, value) = (key.trim(), unquote(value));
    if value.starts_with('[') || value.starts_with('{') || value.starts_with(['&', '*', '|', '>']) {
        return Err(format!("{key}: only plain values and `- ` lists are read"));
    }
    let perm = |v: &str| Perm::parse(v).ok_or_else(|| format!("{key}: unknown perm {v:?}"));
    list_key.clear();
    match key {
        "accessKey" => account.access_key = value,
        "admin" => account.admin = value.eq_ignore_ascii_case("true"),
        "defaultTopicPerm" => account.default_topic = Some(perm(&value)?),
        "defaultGroupPerm" => account.default_group = Some(perm(&value)?),
        "whiteRemoteAddress" if value.is_empty() => *list_key = key.to_string(),
        "whiteRemoteAddress" => account.address_list = true,
        "topicPerms" | "groupPerms" if value.is_empty() => *list_key = key.to_string(),
        "topicPerms" | "groupPerms" => return Err(format!("{key}: expected a `- ` list")),
        "secretKey" => account.secret_key = SecretKey(value),
        _ => {}
    }
    Ok(())
}

/// One `- name=PERM` line of topicPerms or groupPerms.
fn resource_perm(account: Option<&mut Account>, list_key: &str, entry: &str) -> Result<(), String> {
    let account = account.ok_or("a list item before the first account")?;
    let entry = unquote(entry);
    let list = match list_key {
        "topicPerms" => &mut account.topics,
        "groupPerms" => &mut account.groups,
        "whiteRemoteAddress" => {
            account.address_list = true;
            return Ok(());
        }
        _ => return Err("a list item where no list was started".into()),
    };
    let (name, perm) = entry
        .rsplit_once('=')
        .ok_or_else(|| format!("{list_key}: expected name=PERM, found {entry:?}"))?;
    let perm = Perm::parse(perm).ok_or_else(|| format!("{list_key}: unknown perm in {entry:?}"))?;
    list.push((name.trim().to_string(), perm));
    Ok(())
}

/// What recreating one account takes, in order: [`commands`] prints these as shell commands,
/// `apogee config import-state --apply` makes the same changes through the admin API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AclStep {
    /// `apogee user create` (the secret is the account's own, from the file).
    User { access_key: String, admin: bool },
    /// `apogee acl grant`.
    Grant(Grant),
    /// Something the operator should know (a `#` line).
    Note(String),
}

/// One ACL entry to grant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    pub user: String,
    /// A topic entry, or else a consumer group's.
    pub topic: bool,
    /// A name, or `*`.
    pub pattern: String,
    pub perm: Perm,
    pub deny: bool,
}

/// The steps that recreate `file`'s accounts; `bootstrap` is the account that became the
/// config's bootstrap admin (it exists already).
pub fn steps(file: &AclFile, bootstrap: Option<&str>) -> Vec<AclStep> {
    let mut out = Vec::new();
    for a in &file.accounts {
        let ak = &a.access_key;
        if Some(ak.as_str()) == bootstrap {
            out.push(AclStep::Note(format!(
                "{ak}: the bootstrap admin of the config"
            )));
            continue;
        }
        out.push(AclStep::User {
            access_key: ak.clone(),
            admin: a.admin,
        });
        if a.admin {
            continue;
        }
        for (topic, default, own) in [
            (true, a.default_topic, &a.topics),
            (false, a.default_group, &a.groups),
        ] {
            let default = default.unwrap_or(DENY);
            let grant = |pattern: &str, perm: Perm, deny: bool| {
                AclStep::Grant(Grant {
                    user: ak.clone(),
                    topic,
                    pattern: pattern.to_string(),
                    perm,
                    deny,
                })
            };
            if !default.is_empty() {
                out.push(grant("*", default, false));
            }
            for (name, perm) in own {
                let (added, taken) = (perm.minus(default), default.minus(*perm));
                match (added.is_empty(), taken.is_empty()) {
                    _ if perm.is_empty() => out.push(grant(name, both(), true)),
                    (true, true) => {}
                    (false, true) => out.push(grant(name, *perm, false)),
                    (true, false) => out.push(grant(name, taken, true)),
                    (false, false) => {
                        out.push(grant(name, *perm, false));
                        let flag = if topic { "--topic" } else { "--group" };
                        out.push(AclStep::Note(format!(
                            "{ak} could not {} {name} in RocketMQ; Apogee allows it through \
                             the `*` entry (one entry per {flag} name): narrow that entry",
                            taken.actions()
                        )));
                    }
                }
            }
        }
    }
    out
}

/// The shell commands (and `#` notes) that recreate `file`'s accounts; `bootstrap` is the
/// account that became the config's bootstrap admin (it exists already).
pub fn commands(file: &AclFile, bootstrap: Option<&str>) -> Vec<String> {
    steps(file, bootstrap)
        .into_iter()
        .map(|step| match step {
            AclStep::User { access_key, admin } => format!(
                "apogee user create {} --secret-file {}{}",
                shell_word(&access_key),
                shell_word(&format!("{access_key}.secret")),
                if admin { " --role admin" } else { "" }
            ),
            AclStep::Grant(g) => format!(
                "apogee acl grant --user {} {} {} --actions {}{}",
                shell_word(&g.user),
                if g.topic { "--topic" } else { "--group" },
                shell_word(&g.pattern),
                g.perm.actions(),
                if g.deny { " --deny" } else { "" }
            ),
            AclStep::Note(note) => format!("# {note}"),
        })
        .collect()
}

fn both() -> Perm {
    Perm {
        publish: true,
        subscribe: true,
    }
}

/// `s` as one shell word: as it is when plain, else in single quotes.
pub fn shell_word(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.%/:@".contains(c));
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RocketMQ 4.9's shipped plain_acl.yml, in substance.
    const SHIPPED: &str = "\
globalWhiteRemoteAddresses:
  - 10.10.103.*
  - 192.168.0.*

accounts:
  - accessKey: RocketMQ
    secretKey: 12345678
    whiteRemoteAddress:
    admin: false
    defaultTopicPerm: DENY
    defaultGroupPerm: SUB
    topicPerms:
      - topicA=DENY
      - topicB=PUB|SUB
      - topicC=SUB
    groupPerms:
      # the group should convert to retry topic
      - groupA=DENY
      - groupB=PUB|SUB
      - groupC=SUB

  - accessKey: rocketmq2
    secretKey: 12345678
    whiteRemoteAddress: 192.168.1.*
    # if it is admin, it could access all resources
    admin: true
";

    #[test]
    fn the_shipped_file_is_read() {
        let f = parse(SHIPPED).unwrap();
        assert!(f.global_address_list);
        assert_eq!(f.accounts.len(), 2);
        let a = &f.accounts[0];
        assert_eq!(a.access_key, "RocketMQ");
        assert!(!a.admin && !a.address_list);
        assert_eq!(a.default_topic, Some(DENY));
        assert_eq!(a.topics.len(), 3);
        assert_eq!(a.topics[1], ("topicB".to_string(), both()));
        assert_eq!(a.groups[0], ("groupA".to_string(), DENY));
        let b = &f.accounts[1];
        assert_eq!(b.access_key, "rocketmq2");
        assert!(b.admin && b.address_list);
    }

    #[test]
    fn commands_follow_rocketmqs_rule() {
        let f = parse(SHIPPED).unwrap();
        let cmds = commands(&f, Some("rocketmq2"));
        assert_eq!(
            cmds,
            vec![
                "apogee user create RocketMQ --secret-file RocketMQ.secret",
                "apogee acl grant --user RocketMQ --topic topicA --actions pub,sub --deny",
                "apogee acl grant --user RocketMQ --topic topicB --actions pub,sub",
                "apogee acl grant --user RocketMQ --topic topicC --actions sub",
                "apogee acl grant --user RocketMQ --group '*' --actions sub",
                "apogee acl grant --user RocketMQ --group groupA --actions pub,sub --deny",
                "apogee acl grant --user RocketMQ --group groupB --actions pub,sub",
                "# rocketmq2: the bootstrap admin of the config",
            ]
        );
        let cmds = commands(&f, None);
        assert_eq!(
            cmds.last().unwrap(),
            "apogee user create rocketmq2 --secret-file rocketmq2.secret --role admin"
        );
    }

    #[test]
    fn a_narrower_own_perm_is_a_deny_and_a_crossed_one_a_note() {
        let f = parse(
            "accounts:\n- accessKey: app\n  defaultTopicPerm: PUB|SUB\n  topicPerms:\n  \
             - audit=SUB\n  - \"x y=DENY\"\n- accessKey: other\n  defaultTopicPerm: PUB\n  \
             topicPerms: \n  - t=SUB # only subscribe\n",
        )
        .unwrap();
        let cmds = commands(&f, None);
        assert_eq!(
            cmds[1],
            "apogee acl grant --user app --topic '*' --actions pub,sub"
        );
        assert_eq!(
            cmds[2],
            "apogee acl grant --user app --topic audit --actions pub --deny"
        );
        assert_eq!(
            cmds[3],
            "apogee acl grant --user app --topic 'x y' --actions pub,sub --deny"
        );
        assert_eq!(
            cmds[6],
            "apogee acl grant --user other --topic t --actions sub"
        );
        assert!(
            cmds[7].starts_with("# other could not pub t in RocketMQ"),
            "{cmds:?}"
        );
    }

    #[test]
    fn what_is_not_read_names_the_line() {
        for (text, line) in [
            (
                "accounts:\n  - accessKey: a\n    topicPerms: [a=PUB]\n",
                "line 3",
            ),
            (
                "accounts:\n  - accessKey: a\n    defaultTopicPerm: WRITE\n",
                "line 3",
            ),
            (
                "accounts:\n  - accessKey: a\n    topicPerms:\n      - t\n",
                "line 4",
            ),
            ("accounts:\n    accessKey: a\n", "line 2"),
            ("just text\n", "line 1"),
        ] {
            let e = parse(text).unwrap_err();
            assert!(e.starts_with(line), "{text:?}: {e}");
        }
        assert!(parse("accounts:\n  - secretKey: x\n")
            .unwrap_err()
            .contains("no accessKey"));
    }
}
