//! The arguments of `#[vmtest(...)]`: `key = value` pairs, checked and
//! converted here so the expansion only copies values.

use proc_macro2::TokenStream;
use syn::meta::ParseNestedMeta;
use syn::parse::Parser;
use syn::{Error, Expr, ExprLit, Lit, LitInt, LitStr, Result, Token};
use vmtest_contract::units;

/// Every accepted key, with the example its errors show.
const KEYS: &[(&str, &str)] = &[
    ("kernel", r#"kernel = "path/to/bzImage""#),
    (
        "kernels",
        r#"kernels = ["path/to/bzImage-6.1", "path/to/bzImage-6.12"]"#,
    ),
    ("modules", r#"modules = "/lib/modules/6.1.0""#),
    ("memory", r#"memory = "1G""#),
    ("cpus", "cpus = 2"),
    ("kernel_args", r#"kernel_args = "nokaslr""#),
    ("timeout", r#"timeout = "60s""#),
    ("min_kernel", r#"min_kernel = "6.4""#),
    ("max_kernel", r#"max_kernel = "6.11""#),
    (
        "allow_splats",
        r#"allow_splats = ["WARNING: .* my_module_"]"#,
    ),
];

/// The parsed arguments; `None` means "the harness's default".
#[derive(Default)]
pub(crate) struct Args {
    /// `kernel = ".."` or `kernels = [..]`: they fill the same list.
    pub kernels: Option<Kernels>,
    pub modules: Option<LitStr>,
    pub memory_mib: Option<u32>,
    pub cpus: Option<u32>,
    pub kernel_args: Option<LitStr>,
    pub timeout_ms: Option<u64>,
    /// Regular expressions, checked here.
    pub allow_splats: Option<Vec<LitStr>>,
    pub min_kernel: Option<LitStr>,
    pub max_kernel: Option<LitStr>,
}

/// The kernel images, and which of the two keys gave them.
pub(crate) struct Kernels {
    key: String,
    pub paths: Vec<LitStr>,
    /// `kernels = "${VAR}"`: a list read from the environment at run time.
    pub list: Option<LitStr>,
}

impl Args {
    /// Parses the tokens inside `#[vmtest(...)]` (empty for a bare `#[vmtest]`).
    pub(crate) fn parse(tokens: TokenStream) -> Result<Args> {
        let mut args = Args::default();
        syn::meta::parser(|meta| args.parse_key(&meta)).parse2(tokens)?;
        Ok(args)
    }

    fn parse_key(&mut self, meta: &ParseNestedMeta) -> Result<()> {
        let key = match meta.path.get_ident() {
            Some(ident) => ident.to_string(),
            None => String::new(),
        };
        match key.as_str() {
            "kernel" | "kernels" => {
                if let Some(previous) = &self.kernels {
                    if previous.key == key {
                        return Err(duplicate(meta, &key));
                    }
                    return Err(Error::new_spanned(
                        &meta.path,
                        "`kernel` and `kernels` cannot both be given: \
                         list every kernel in `kernels = [..]`",
                    ));
                }
                let value = value(meta, &key)?;
                let (paths, list) = match (key.as_str(), literal(&value)) {
                    ("kernel", _) => (vec![path(&value, &key)?], None),
                    (_, Some(Lit::Str(_))) => (Vec::new(), Some(path(&value, &key)?)),
                    _ => (kernel_list(&value)?, None),
                };
                self.kernels = Some(Kernels { key, paths, list });
                Ok(())
            }
            "modules" => set(&mut self.modules, meta, &key, |value| {
                path(value, "modules")
            }),
            "memory" => set(&mut self.memory_mib, meta, &key, |value| {
                let lit = string(value, "memory")?;
                units::memory_mib(&lit.value()).map_err(|error| Error::new_spanned(lit, error))
            }),
            "cpus" => set(&mut self.cpus, meta, &key, cpus),
            "kernel_args" => set(&mut self.kernel_args, meta, &key, |value| {
                string(value, "kernel_args").cloned()
            }),
            "timeout" => set(&mut self.timeout_ms, meta, &key, |value| {
                let lit = string(value, "timeout")?;
                units::duration(&lit.value())
                    .map(|duration| u64::try_from(duration.as_millis()).unwrap_or(u64::MAX))
                    .map_err(|error| Error::new_spanned(lit, format!("timeout: {error}")))
            }),
            "allow_splats" => set(&mut self.allow_splats, meta, &key, pattern_list),
            "min_kernel" => set(&mut self.min_kernel, meta, &key, |value| {
                version(value, "min_kernel")
            }),
            "max_kernel" => set(&mut self.max_kernel, meta, &key, |value| {
                version(value, "max_kernel")
            }),
            _ => Err(Error::new_spanned(
                &meta.path,
                unknown_key(&path_text(&meta.path)),
            )),
        }
    }
}

/// "unknown key", with the closest accepted key when there is one.
fn unknown_key(key: &str) -> String {
    let keys: Vec<&str> = KEYS.iter().map(|(key, _)| *key).collect();
    let closest = keys
        .iter()
        .map(|candidate| (edit_distance(key, candidate), *candidate))
        .min()
        .filter(|(distance, _)| *distance <= 2);
    match closest {
        Some((_, candidate)) => format!(
            "unknown key `{key}`: did you mean `{candidate}`? accepted keys: {}",
            keys.join(", ")
        ),
        None => format!("unknown key `{key}`; accepted keys: {}", keys.join(", ")),
    }
}

/// Levenshtein distance, for suggestions.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, a_char) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, b_char) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(a_char != *b_char);
            current.push(substitution.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}

fn path_text(path: &syn::Path) -> String {
    let segments: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
    segments.join("::")
}

/// Fills `slot` from the key's value, refusing a key given twice.
fn set<T>(
    slot: &mut Option<T>,
    meta: &ParseNestedMeta,
    key: &str,
    convert: impl FnOnce(&Expr) -> Result<T>,
) -> Result<()> {
    if slot.is_some() {
        return Err(duplicate(meta, key));
    }
    *slot = Some(convert(&value(meta, key)?)?);
    Ok(())
}

fn duplicate(meta: &ParseNestedMeta, key: &str) -> Error {
    Error::new_spanned(&meta.path, format!("duplicate key `{key}`: give it once"))
}

fn example(key: &str) -> &'static str {
    KEYS.iter()
        .find(|(name, _)| *name == key)
        .map_or("", |(_, example)| example)
}

/// The expression after `key =`.
fn value(meta: &ParseNestedMeta, key: &str) -> Result<Expr> {
    if !meta.input.peek(Token![=]) {
        return Err(meta.error(format!("`{key}` needs a value: `{}`", example(key))));
    }
    meta.value()?.parse()
}

/// The literal inside `value`, looking through the invisible groups that
/// `macro_rules!` wraps around `$x:literal` / `$x:expr`.
fn literal(value: &Expr) -> Option<&Lit> {
    match value {
        Expr::Lit(ExprLit { lit, .. }) => Some(lit),
        Expr::Group(group) => literal(&group.expr),
        _ => None,
    }
}

fn string<'a>(value: &'a Expr, key: &str) -> Result<&'a LitStr> {
    match literal(value) {
        Some(Lit::Str(lit)) => Ok(lit),
        _ => Err(Error::new_spanned(
            value,
            format!("expected a string literal: `{}`", example(key)),
        )),
    }
}

/// A path to a kernel or a modules directory: a non-empty string literal.
fn path(value: &Expr, key: &str) -> Result<LitStr> {
    let lit = match literal(value) {
        Some(Lit::Str(lit)) => lit,
        _ => {
            return Err(Error::new_spanned(
                value,
                format!(
                    "expected a string literal: `{}` (`${{VAR}}` is expanded when the test runs)",
                    example(key)
                ),
            ))
        }
    };
    if lit.value().is_empty() {
        return Err(Error::new_spanned(
            lit,
            format!("`{key}` is empty: give a path, as in `{}`", example(key)),
        ));
    }
    Ok(lit.clone())
}

fn kernel_list(value: &Expr) -> Result<Vec<LitStr>> {
    let array = match value {
        Expr::Array(array) => array,
        _ => {
            return Err(Error::new_spanned(
                value,
                format!(
                    "expected an array of string literals: `{}` (or `{}` for one kernel, or \
                     `kernels = \"${{VMTEST_KERNELS}}\"` for a list read when the tests run)",
                    example("kernels"),
                    example("kernel")
                ),
            ))
        }
    };
    if array.elems.is_empty() {
        return Err(Error::new_spanned(
            array,
            "`kernels` is empty: list at least one kernel, or remove the key \
             to use the kernel in `VMTEST_KERNEL`",
        ));
    }
    let mut paths: Vec<LitStr> = Vec::new();
    for element in &array.elems {
        let lit = path(element, "kernels")?;
        if paths.iter().any(|seen| seen.value() == lit.value()) {
            return Err(Error::new_spanned(
                &lit,
                format!("kernel {:?} is listed twice: remove one", lit.value()),
            ));
        }
        paths.push(lit);
    }
    Ok(paths)
}

/// `["regex", ...]`: each a valid regular expression (the syntax of the
/// `regex` crate, which matches them against kernel log lines).
fn pattern_list(value: &Expr) -> Result<Vec<LitStr>> {
    let Expr::Array(array) = value else {
        return Err(Error::new_spanned(
            value,
            format!(
                "expected an array of string literals: `{}`",
                example("allow_splats")
            ),
        ));
    };
    let mut patterns = Vec::new();
    for element in &array.elems {
        let lit = string(element, "allow_splats")?;
        if lit.value().is_empty() {
            return Err(Error::new_spanned(
                lit,
                "an empty pattern would allow every splat",
            ));
        }
        if let Err(error) = regex_syntax::Parser::new().parse(&lit.value()) {
            return Err(Error::new_spanned(
                lit,
                format!("not a valid regular expression: {error}"),
            ));
        }
        patterns.push(lit.clone());
    }
    Ok(patterns)
}

/// A kernel version bound: `"6"`, `"6.4"` or `"6.1.90"`.
fn version(value: &Expr, key: &str) -> Result<LitStr> {
    let lit = string(value, key)?;
    let text = lit.value();
    let parts: Vec<&str> = text.split('.').collect();
    let numbers = parts
        .iter()
        .all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()));
    if !numbers || parts.len() > 3 {
        return Err(Error::new_spanned(
            lit,
            format!("`{key}` {text:?} is not a kernel version such as \"6.4\" or \"6.1.90\""),
        ));
    }
    Ok(lit.clone())
}

fn cpus(value: &Expr) -> Result<u32> {
    let range_error = || {
        Error::new_spanned(
            value,
            format!(
                "expected a number of vCPUs from 1 to {}: `cpus = 2`",
                units::MAX_CPUS
            ),
        )
    };
    let lit: &LitInt = match literal(value) {
        Some(Lit::Int(lit)) => lit,
        _ => return Err(range_error()),
    };
    match lit.base10_parse::<u32>() {
        Ok(cpus) if (1..=units::MAX_CPUS).contains(&cpus) => Ok(cpus),
        _ => Err(range_error()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quote::quote;

    #[test]
    fn edit_distances() {
        assert_eq!(edit_distance("memroy", "memory"), 2);
        assert_eq!(edit_distance("cpu", "cpus"), 1);
        assert_eq!(edit_distance("", "cpus"), 4);
        assert_eq!(edit_distance("timeout", "timeout"), 0);
    }

    fn parse(tokens: TokenStream) -> Result<Args> {
        Args::parse(tokens)
    }

    fn error(tokens: TokenStream) -> String {
        match parse(tokens) {
            Ok(_) => panic!("expected an error"),
            Err(error) => error.to_string(),
        }
    }

    #[test]
    fn every_key() {
        let args = parse(quote! {
            kernels = ["a", "b"], modules = "m", memory = "1G", cpus = 2,
            kernel_args = "nokaslr", timeout = "60s", allow_splats = ["lkdtm_WARNING", "^BUG: .*"],
            min_kernel = "6.4", max_kernel = "6.11.2",
        })
        .unwrap();
        assert_eq!(
            args.min_kernel.as_ref().map(LitStr::value).as_deref(),
            Some("6.4")
        );
        assert_eq!(
            args.max_kernel.as_ref().map(LitStr::value).as_deref(),
            Some("6.11.2")
        );
        let kernels: Vec<String> = args
            .kernels
            .unwrap()
            .paths
            .iter()
            .map(LitStr::value)
            .collect();
        assert_eq!(kernels, ["a", "b"]);
        assert_eq!(args.modules.unwrap().value(), "m");
        assert_eq!(args.memory_mib, Some(1024));
        assert_eq!(args.cpus, Some(2));
        assert_eq!(args.kernel_args.unwrap().value(), "nokaslr");
        assert_eq!(args.timeout_ms, Some(60_000));
        let patterns: Vec<String> = args
            .allow_splats
            .unwrap()
            .iter()
            .map(LitStr::value)
            .collect();
        assert_eq!(patterns, ["lkdtm_WARNING", "^BUG: .*"]);
    }

    #[test]
    fn kernels_may_be_a_list_read_when_the_tests_run() {
        let args = parse(quote!(kernels = "${VMTEST_KERNELS}")).unwrap();
        let kernels = args.kernels.unwrap();
        assert!(kernels.paths.is_empty());
        assert_eq!(kernels.list.unwrap().value(), "${VMTEST_KERNELS}");
    }

    #[test]
    fn no_keys() {
        let args = parse(TokenStream::new()).unwrap();
        assert!(args.kernels.is_none() && args.memory_mib.is_none() && args.cpus.is_none());
    }

    #[test]
    fn key_errors() {
        let unknown = error(quote!(memroy = "1G"));
        assert_eq!(
            unknown,
            "unknown key `memroy`: did you mean `memory`? accepted keys: \
             kernel, kernels, modules, memory, cpus, kernel_args, timeout, min_kernel, max_kernel, allow_splats"
        );
        assert!(error(quote!(qemu = 1)).starts_with("unknown key `qemu`; accepted keys: kernel,"));
        assert!(error(quote!(kernel_arg = "x")).contains("did you mean `kernel_args`?"));
        assert!(error(quote!(a::b = 1)).starts_with("unknown key `a::b`"));
        assert_eq!(
            error(quote!(cpus = 1, cpus = 2)),
            "duplicate key `cpus`: give it once"
        );
        assert!(error(quote!(kernel = "a", kernel = "b")).starts_with("duplicate key `kernel`"));
        assert!(error(quote!(kernel = "a", kernels = ["b"])).contains("cannot both be given"));
        assert!(error(quote!(kernels = ["b"], kernel = "a")).contains("cannot both be given"));
        assert!(error(quote!(memory)).starts_with("`memory` needs a value"));
    }

    #[test]
    fn value_errors() {
        assert!(error(quote!(kernel = 1)).starts_with("expected a string literal"));
        assert!(error(quote!(kernel = "")).contains("is empty"));
        assert!(error(quote!(kernels = 1)).starts_with("expected an array"));
        assert!(error(quote!(kernels = [])).starts_with("`kernels` is empty"));
        assert!(error(quote!(kernels = ["a", 1])).starts_with("expected a string literal"));
        assert!(error(quote!(kernels = ["a", "a"])).contains("listed twice"));
        assert!(error(quote!(memory = 1024)).starts_with("expected a string literal"));
        assert!(error(quote!(memory = "32M")).contains("too small"));
        assert!(error(quote!(timeout = 60)).starts_with("expected a string literal"));
        for cpus in [quote!(0), quote!(256), quote!(-1), quote!("2"), quote!(1.5)] {
            assert!(error(quote!(cpus = #cpus)).contains("from 1 to 255"));
        }
        // The one syntax of sizes and durations (vmtest-contract's units).
        assert_eq!(
            parse(quote!(memory = "4096")).unwrap().memory_mib,
            Some(4096)
        );
        assert_eq!(
            parse(quote!(timeout = "90")).unwrap().timeout_ms,
            Some(90_000)
        );
        assert!(error(quote!(timeout = "0s")).starts_with("timeout: \"0s\" is zero"));
        assert!(error(quote!(kernel_args = 1)).starts_with("expected a string literal"));
        assert!(error(quote!(allow_splats = "x")).starts_with("expected an array"));
        assert!(error(quote!(min_kernel = "6.x")).contains("is not a kernel version"));
        assert!(error(quote!(max_kernel = 6)).starts_with("expected a string literal"));
        assert!(error(quote!(kernels = "")).contains("is empty"));
        assert!(error(quote!(allow_splats = [""])).contains("would allow every splat"));
        assert!(error(quote!(allow_splats = ["(unclosed"]))
            .starts_with("not a valid regular expression"));
    }
}
