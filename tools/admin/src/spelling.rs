//! The enums an operator names in words (a queue permission, a topic type, an output format,
//! a role ...): every variant's name as it is typed, with a one-line description. The CLI
//! offers them as its flags' possible values and the console as its forms' choices; nothing
//! here knows a command line.

/// An enum whose variants are named in words.
pub trait Spelled: Sized + Copy + PartialEq + 'static {
    /// Every variant in declaration order: the variant, its name (lower case, words joined
    /// by `-`) and its description ("" for none).
    const SPELLINGS: &'static [(Self, &'static str, &'static str)];

    /// This variant's name.
    fn name(self) -> &'static str {
        Self::SPELLINGS
            .iter()
            .find(|(variant, _, _)| *variant == self)
            .map_or("", |(_, name, _)| name)
    }

    /// The variant named `name` (surrounding spaces and case ignored).
    fn from_name(name: &str) -> Option<Self> {
        let name = name.trim();
        Self::SPELLINGS
            .iter()
            .find(|(_, spelled, _)| spelled.eq_ignore_ascii_case(name))
            .map(|(variant, _, _)| *variant)
    }
}

#[cfg(test)]
mod tests {
    use super::Spelled;
    use crate::access::RoleArg;
    use crate::admin::{Perm, TopicType};
    use crate::group::LiteModeArg;
    use crate::messaging::TxnEnd;
    use crate::output::Format;

    /// Each variant appears once, under a name that reads back as that variant.
    fn spelled_once_each<T: Spelled + std::fmt::Debug>() {
        for (variant, name, _) in T::SPELLINGS {
            assert_eq!(T::from_name(name), Some(*variant), "{name}");
            assert_eq!(variant.name(), *name);
            assert_eq!(
                T::from_name(&format!(" {} ", name.to_uppercase())),
                Some(*variant)
            );
            let same = T::SPELLINGS.iter().filter(|(v, _, _)| v == variant);
            assert_eq!(same.count(), 1, "{variant:?} is listed more than once");
        }
        assert_eq!(T::from_name("no-such-name"), None);
    }

    #[test]
    fn every_spelled_enum_names_each_variant_once() {
        spelled_once_each::<Perm>();
        spelled_once_each::<TopicType>();
        spelled_once_each::<RoleArg>();
        spelled_once_each::<LiteModeArg>();
        spelled_once_each::<TxnEnd>();
        spelled_once_each::<Format>();
    }

    #[test]
    fn names_are_the_ones_the_cli_always_took() {
        let names = |spellings: &[(Perm, &str, &str)]| -> Vec<String> {
            spellings.iter().map(|(_, n, _)| n.to_string()).collect()
        };
        assert_eq!(names(Perm::SPELLINGS), ["rw", "r", "w"]);
        assert_eq!(Format::from_name("JSONL"), Some(Format::Jsonl));
        assert_eq!(RoleArg::from_name("admin"), Some(RoleArg::Admin));
    }
}
