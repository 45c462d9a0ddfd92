//! Flags whose values are the admin library's named enums ([`Spelled`]): their names are the
//! flag's possible values, listed in `--help` with their descriptions and offered to shell
//! completion, as clap's derived value enums list them.

use apogee_admin::spelling::Spelled;
use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};

/// The value parser of a flag taking one of `T`'s names (case as the flag's `ignore_case`
/// says).
pub fn spelled<T>() -> impl TypedValueParser<Value = T>
where
    T: Spelled + Send + Sync,
{
    let possible = T::SPELLINGS.iter().map(|(_, name, help)| {
        let value = PossibleValue::new(*name);
        match *help {
            "" => value,
            help => value.help(help),
        }
    });
    // The parser admits only the names, so each one it passes on reads back.
    PossibleValuesParser::new(possible).map(|name| match T::from_name(&name) {
        Some(variant) => variant,
        None => unreachable!("{name:?} is one of the possible values"),
    })
}

#[cfg(test)]
mod tests {
    use super::spelled;
    use apogee_admin::admin::Perm;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Flags {
        #[arg(long, value_parser = spelled::<Perm>())]
        perm: Option<Perm>,
    }

    #[test]
    fn a_flag_takes_the_names_and_refuses_others_listing_them() {
        let parse =
            |args: &[&str]| Flags::try_parse_from(std::iter::once("t").chain(args.iter().copied()));
        assert_eq!(parse(&["--perm", "w"]).unwrap().perm, Some(Perm::W));
        let refused = parse(&["--perm", "x"]).unwrap_err().to_string();
        assert!(refused.contains("[possible values: rw, r, w]"), "{refused}");
    }
}
