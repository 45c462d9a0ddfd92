use super::*;

fn user(key: &str) -> Identity {
    Identity::User {
        access_key: key.into(),
        role: Role::User,
    }
}

fn entry(key: &str, kind: ResourceKind, pattern: &str, publish: bool, subscribe: bool) -> AclEntry {
    AclEntry {
        access_key: key.into(),
        kind: kind.to_wire() as i32,
        pattern: pattern.into(),
        publish,
        subscribe,
        deny: false,
        updated_ms: 1,
        deleted: false,
    }
}

fn seal() -> SecretSeal {
    SecretSeal::new(&ClusterSecret::new(b"0123456789abcdef-cluster").unwrap())
}

#[test]
fn default_deny_then_allow_with_deny_winning() {
    use ResourceKind::*;
    let mut deny = entry("app", Topic, "orders-secret", true, true);
    deny.deny = true;
    let set = AclSet::of(&[
        entry("app", Topic, "orders*", true, false),
        entry("app", Group, "billing", false, true),
        deny,
    ]);
    let app = user("app");
    set.permits(&app, Topic, "orders", Action::Pub).unwrap();
    set.permits(&app, Topic, "orders-eu", Action::Pub).unwrap();
    set.permits(&app, Group, "billing", Action::Sub).unwrap();
    let e = set.permits(&app, Topic, "orders", Action::Sub).unwrap_err();
    assert!(matches!(e, ApogeeError::Forbidden(_)), "{e}");
    assert!(
        e.to_string().contains("user app may not sub topic orders"),
        "{e}"
    );
    // A deny entry beats the prefix grant.
    let e = set
        .permits(&app, Topic, "orders-secret", Action::Pub)
        .unwrap_err();
    assert!(e.to_string().contains("denied"), "{e}");
    // Other topics, groups and users: refused by default.
    assert!(set.permits(&app, Topic, "payments", Action::Pub).is_err());
    assert!(set.permits(&app, Group, "billing-2", Action::Sub).is_err());
    assert!(set
        .permits(&user("eve"), Topic, "orders", Action::Pub)
        .is_err());
    // The cluster and admins may do everything.
    set.permits(&Identity::Cluster, Topic, "x", Action::Sub)
        .unwrap();
    let admin = Identity::User {
        access_key: "root".into(),
        role: Role::Admin,
    };
    set.permits(&admin, Topic, "orders-secret", Action::Sub)
        .unwrap();
    // A deleted entry counts for nothing.
    let mut gone = entry("app", Topic, "payments", true, true);
    gone.deleted = true;
    assert!(AclSet::of(&[gone])
        .permits(&app, Topic, "payments", Action::Pub)
        .is_err());
}

#[test]
fn patterns_and_entries_are_validated() {
    assert!(pattern_matches("*", "anything"));
    assert!(pattern_matches("ord*", "orders"));
    assert!(!pattern_matches("ord", "orders"));
    validate_pattern(ResourceKind::Topic, "orders").unwrap();
    validate_pattern(ResourceKind::Topic, "orders*").unwrap();
    validate_pattern(ResourceKind::Group, "*").unwrap();
    assert!(validate_pattern(ResourceKind::Topic, "bad name").is_err());
    assert!(validate_pattern(ResourceKind::Topic, "a*b").is_err());
    assert!(validate_pattern(ResourceKind::Topic, "").is_err());
    let ok = entry("app", ResourceKind::Topic, "t", true, false);
    assert_eq!(validate_entry(&ok).unwrap(), ResourceKind::Topic);
    let no_action = entry("app", ResourceKind::Topic, "t", false, false);
    assert!(validate_entry(&no_action).is_err());
    let bad_key = entry("a,b", ResourceKind::Topic, "t", true, false);
    assert!(validate_entry(&bad_key).is_err());
    let no_kind = AclEntry {
        kind: 0,
        ..ok.clone()
    };
    assert!(validate_entry(&no_kind).is_err());
}

#[test]
fn sealed_secrets_open_only_for_their_user_and_cluster() {
    let s = seal();
    let sealed = s.seal("app", "app-secret-value");
    assert!(!sealed
        .windows(b"app-secret-value".len())
        .any(|w| w == b"app-secret-value"));
    assert_eq!(s.open("app", &sealed).unwrap(), "app-secret-value");
    // A fresh nonce every time.
    assert_ne!(s.seal("app", "app-secret-value"), sealed);
    assert!(s.open("other", &sealed).is_err());
    let mut tampered = sealed.clone();
    *tampered.last_mut().unwrap() ^= 1;
    assert!(s.open("app", &tampered).is_err());
    let other = SecretSeal::new(&ClusterSecret::new(b"another-cluster-secret").unwrap());
    assert!(other.open("app", &sealed).is_err());
    assert!(s.open("app", b"short").is_err());
    assert!(!format!("{s:?}").contains("app-secret"));
}

#[test]
fn merges_keep_the_newest_change_and_tombstones() {
    let s = seal();
    let at = |ms: i64, role: AccessRole, deleted: bool| AccessUser {
        access_key: "app".into(),
        sealed_secret: s.seal("app", &format!("secret-{ms}")),
        role: role as i32,
        updated_ms: ms,
        deleted,
    };
    let mut state = AccessState::default();
    assert!(state.merge_user(at(10, AccessRole::User, false)));
    assert!(!state.merge_user(at(5, AccessRole::Admin, false)));
    assert_eq!(state.user("app").unwrap().role, AccessRole::User as i32);
    assert!(state.merge_user(at(20, AccessRole::Admin, false)));
    // A deletion at the same time wins; an older re-creation does not undo it.
    assert!(state.merge_user(at(20, AccessRole::Admin, true)));
    assert!(state.user("app").is_none());
    assert!(!state.merge_user(at(15, AccessRole::User, false)));
    assert_eq!(state.all_users().count(), 1);
    assert!(state.merge_user(at(30, AccessRole::User, false)));

    let mut e = entry("app", ResourceKind::Topic, "t", true, false);
    e.updated_ms = 30;
    assert!(state.merge_acl(e.clone()));
    let mut older = e.clone();
    older.updated_ms = 3;
    older.subscribe = true;
    assert!(!state.merge(vec![], vec![older]));
    assert!(!state.acl(&acl_key(&e)).unwrap().subscribe);

    // What another copy lacks or holds older, and nothing once it caught up.
    let mut behind = AccessState::default();
    behind.merge_user(at(10, AccessRole::User, false));
    let (users, acls) = state.newer_than(&behind);
    assert_eq!((users.len(), acls.len()), (1, 1));
    assert_eq!(users[0].updated_ms, 30);
    behind.merge(users, acls);
    assert_eq!(state.newer_than(&behind), (vec![], vec![]));

    let grants = state.grants(&s);
    assert_eq!(
        grants.accounts.get("app").map(|(k, r)| (k.to_vec(), *r)),
        Some((b"secret-30".to_vec(), Role::User))
    );
    grants
        .acls
        .permits(&user("app"), ResourceKind::Topic, "t", Action::Pub)
        .unwrap();
    // A secret sealed under another cluster secret is left out.
    let foreign = SecretSeal::new(&ClusterSecret::new(b"another-cluster-secret").unwrap());
    assert!(state.grants(&foreign).accounts.is_empty());
}

#[test]
fn requests_without_identity_are_allowed_and_users_are_checked() {
    let request = tonic::Request::new(());
    authorize(&request, &[(ResourceKind::Topic, "t")], Action::Pub).unwrap();
    let mut request = tonic::Request::new(());
    request.extensions_mut().insert(user("app"));
    request.extensions_mut().insert(Arc::new(AclSet::of(&[entry(
        "app",
        ResourceKind::Topic,
        "t",
        false,
        true,
    )])));
    authorize(&request, &[(ResourceKind::Topic, "t")], Action::Sub).unwrap();
    let both = [(ResourceKind::Topic, "t"), (ResourceKind::Group, "g")];
    assert!(authorize(&request, &both, Action::Sub).is_err());
    assert!(authorize(&request, &[(ResourceKind::Topic, "t")], Action::Pub).is_err());
}

#[test]
fn a_listing_shows_a_user_what_their_entries_grant_and_everything_to_others() {
    use ResourceKind::*;
    let mut deny = entry("app", Topic, "orders-secret", true, true);
    deny.deny = true;
    let set = Arc::new(AclSet::of(&[
        entry("app", Topic, "orders*", false, true),
        entry("app", Group, "billing", false, true),
        deny,
    ]));
    let request = |identity: Option<Identity>| {
        let mut r = tonic::Request::new(());
        if let Some(identity) = identity {
            r.extensions_mut().insert(identity);
        }
        r.extensions_mut().insert(set.clone());
        r
    };
    let scope = ListingScope::of(&request(Some(user("app")))).expect("a user's scope");
    assert_eq!(scope.access_key(), "app");
    assert!(scope.shows(Topic, "orders-eu"));
    assert!(
        !scope.shows(Topic, "orders-secret"),
        "a deny entry hides it"
    );
    assert!(!scope.shows(Topic, "payments"));
    assert!(scope.shows(Group, "billing"));
    assert!(
        !scope.shows(Group, "orders-eu"),
        "a topic entry grants no group"
    );
    let admin = Identity::User {
        access_key: "root".into(),
        role: Role::Admin,
    };
    assert!(ListingScope::of(&request(Some(admin))).is_none());
    assert!(ListingScope::of(&request(Some(Identity::Cluster))).is_none());
    assert!(
        ListingScope::of(&request(None)).is_none(),
        "authentication off"
    );
}
