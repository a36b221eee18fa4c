//! The expansion: the user's function, stripped of the test attributes this
//! macro reads, followed by its registration in the harness's inventory.

use proc_macro2::{Literal, Span, TokenStream};
use quote::{quote, quote_spanned, ToTokens};
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::{Attribute, Error, ItemFn, LitStr, Meta, ReturnType, Signature};

use crate::args::Args;

/// `#[vmtest(args)] item`.
pub(crate) fn vmtest(args: TokenStream, item: TokenStream) -> TokenStream {
    let mut function: ItemFn = match syn::parse2(item.clone()) {
        Ok(function) => function,
        Err(_) => {
            let error = Error::new(
                Span::call_site(),
                "#[vmtest] applies to functions only: `fn name() { .. }`",
            );
            return with_error(item, error);
        }
    };
    let mut errors = Errors::default();
    let args = Args::parse(args).map_err(|error| errors.push(error)).ok();
    let attrs = TestAttrs::take(&mut function.attrs, &mut errors);
    check_signature(&function.sig, &mut errors);
    match (errors.0, args) {
        (None, Some(args)) => {
            let registration = registration(&function, &args, &attrs);
            quote!(#function #registration)
        }
        (Some(error), _) => with_error(function.into_token_stream(), error),
        (None, None) => unreachable!("a failed parse pushes its error"),
    }
}

/// The item as it is, so IDEs still see it, then the errors.
fn with_error(item: TokenStream, error: Error) -> TokenStream {
    let error = error.into_compile_error();
    quote!(#item #error)
}

/// Every problem found, reported together.
#[derive(Default)]
struct Errors(Option<Error>);

impl Errors {
    fn push(&mut self, error: Error) {
        match &mut self.0 {
            Some(errors) => errors.combine(error),
            None => self.0 = Some(error),
        }
    }
}

/// What the libtest attributes on the function asked for.
struct TestAttrs {
    ignore: bool,
    should_panic: ShouldPanic,
}

enum ShouldPanic {
    No,
    Yes,
    Expected(LitStr),
}

impl TestAttrs {
    /// Reads and removes `#[ignore]` and `#[should_panic]` (libtest would never
    /// see them: the test is not a `#[test]`), and refuses `#[test]`.
    fn take(attrs: &mut Vec<Attribute>, errors: &mut Errors) -> TestAttrs {
        let mut found = TestAttrs {
            ignore: false,
            should_panic: ShouldPanic::No,
        };
        let mut seen_ignore = false;
        let mut seen_should_panic = false;
        attrs.retain(|attr| {
            let path = attr.path();
            if is_test_attribute(path) {
                errors.push(Error::new_spanned(
                    attr,
                    "remove #[test]: #[vmtest] registers the test",
                ));
                false
            } else if path.is_ident("ignore") {
                if std::mem::replace(&mut seen_ignore, true) {
                    errors.push(Error::new_spanned(attr, "duplicate #[ignore]: remove one"));
                }
                match &attr.meta {
                    Meta::Path(_) => {}
                    Meta::NameValue(meta) if is_string(&meta.value) => {}
                    _ => errors.push(Error::new_spanned(
                        attr,
                        r#"expected #[ignore] or #[ignore = "reason"]"#,
                    )),
                }
                found.ignore = true;
                false
            } else if path.is_ident("should_panic") {
                if std::mem::replace(&mut seen_should_panic, true) {
                    errors.push(Error::new_spanned(
                        attr,
                        "duplicate #[should_panic]: remove one",
                    ));
                }
                match should_panic(attr) {
                    Ok(should_panic) => found.should_panic = should_panic,
                    Err(error) => errors.push(error),
                }
                false
            } else {
                true
            }
        });
        found
    }
}

/// `#[test]`, also spelled through the prelude (`#[core::prelude::v1::test]`).
fn is_test_attribute(path: &syn::Path) -> bool {
    let segments: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
    match segments.as_slice() {
        [test] => test == "test",
        [root, prelude, .., test] => {
            (root == "core" || root == "std") && prelude == "prelude" && test == "test"
        }
        _ => false,
    }
}

fn is_string(expr: &syn::Expr) -> bool {
    matches!(
        expr,
        syn::Expr::Lit(syn::ExprLit {
            lit: syn::Lit::Str(_),
            ..
        })
    )
}

fn should_panic(attr: &Attribute) -> syn::Result<ShouldPanic> {
    const EXPECTED: &str = r#"expected #[should_panic], #[should_panic = "message"] or #[should_panic(expected = "message")]"#;
    match &attr.meta {
        Meta::Path(_) => Ok(ShouldPanic::Yes),
        Meta::NameValue(meta) => match &meta.value {
            syn::Expr::Lit(syn::ExprLit {
                lit: syn::Lit::Str(message),
                ..
            }) => Ok(ShouldPanic::Expected(message.clone())),
            _ => Err(Error::new_spanned(&meta.value, EXPECTED)),
        },
        Meta::List(_) => {
            let mut expected = None;
            attr.parse_nested_meta(|meta| {
                if !meta.path.is_ident("expected") {
                    return Err(Error::new_spanned(&meta.path, EXPECTED));
                }
                if expected.is_some() {
                    return Err(Error::new_spanned(
                        &meta.path,
                        "duplicate `expected`: give it once",
                    ));
                }
                expected = Some(meta.value()?.parse::<LitStr>()?);
                Ok(())
            })?;
            Ok(expected.map_or(ShouldPanic::Yes, ShouldPanic::Expected))
        }
    }
}

/// The harness calls the function as `name()` from a plain `fn() -> ..`.
fn check_signature(sig: &Signature, errors: &mut Errors) {
    if let Some(asyncness) = &sig.asyncness {
        errors.push(Error::new_spanned(
            asyncness,
            "#[vmtest] functions cannot be async: remove `async` and block on the future \
             inside the test (e.g. with your runtime's `block_on`)",
        ));
    }
    if let Some(unsafety) = &sig.unsafety {
        errors.push(Error::new_spanned(
            unsafety,
            "#[vmtest] functions cannot be unsafe: remove `unsafe` and use an `unsafe` block inside",
        ));
    }
    if !sig.generics.params.is_empty() {
        errors.push(Error::new_spanned(
            &sig.generics,
            "#[vmtest] functions cannot be generic: remove the generic parameters",
        ));
    }
    if let Some(where_clause) = &sig.generics.where_clause {
        errors.push(Error::new_spanned(
            where_clause,
            "#[vmtest] functions cannot have a where clause: remove it",
        ));
    }
    if !sig.inputs.is_empty() {
        errors.push(Error::new_spanned(
            &sig.inputs,
            "#[vmtest] functions take no parameters: remove them",
        ));
    }
    if let Some(variadic) = &sig.variadic {
        errors.push(Error::new_spanned(
            variadic,
            "#[vmtest] functions take no parameters: remove `...`",
        ));
    }
}

/// The `VmTest` for `function`, submitted to the inventory.
fn registration(function: &ItemFn, args: &Args, attrs: &TestAttrs) -> TokenStream {
    let ident = &function.sig.ident;
    let name = ident.unraw().to_string();
    let kernels = args.kernels.iter().flat_map(|kernels| &kernels.paths);
    let kernel_list = option(
        args.kernels
            .as_ref()
            .and_then(|kernels| kernels.list.as_ref()),
    );
    let min_kernel = option(args.min_kernel.as_ref());
    let max_kernel = option(args.max_kernel.as_ref());
    let modules = option(args.modules.as_ref());
    let memory_mib = option(args.memory_mib.map(Literal::u32_suffixed));
    let cpus = option(args.cpus.map(Literal::u32_suffixed));
    let kernel_args = match &args.kernel_args {
        Some(kernel_args) => kernel_args.to_token_stream(),
        None => quote!(""),
    };
    let timeout_ms = option(args.timeout_ms.map(Literal::u64_suffixed));
    let allowed_splats = args.allow_splats.iter().flatten();
    let ignore = attrs.ignore;
    let should_panic = match &attrs.should_panic {
        ShouldPanic::No => quote!(::vmtest_harness::__private::ShouldPanic::No),
        ShouldPanic::Yes => quote!(::vmtest_harness::__private::ShouldPanic::Yes),
        ShouldPanic::Expected(message) => {
            quote!(::vmtest_harness::__private::ShouldPanic::Expected(#message))
        }
    };
    // Spanned at the return type, so an unsupported one is reported there.
    let return_span = match &function.sig.output {
        ReturnType::Default => ident.span(),
        ReturnType::Type(_, ty) => ty.span(),
    };
    let run = quote_spanned! {return_span=>
        || ::vmtest_harness::__private::TestReturn::into_result(#ident())
    };
    quote! {
        const _: () = {
            ::vmtest_harness::__private::inventory::submit! {
                ::vmtest_harness::__private::VmTest {
                    name: #name,
                    module_path: ::core::module_path!(),
                    manifest_dir: ::core::env!("CARGO_MANIFEST_DIR"),
                    kernels: &[#(#kernels),*],
                    kernel_list: #kernel_list,
                    min_kernel: #min_kernel,
                    max_kernel: #max_kernel,
                    modules: #modules,
                    memory_mib: #memory_mib,
                    cpus: #cpus,
                    kernel_args: #kernel_args,
                    timeout_ms: #timeout_ms,
                    allowed_splats: &[#(#allowed_splats),*],
                    ignore: #ignore,
                    should_panic: #should_panic,
                    run: #run,
                }
            }
        };
    }
}

fn option(value: Option<impl ToTokens>) -> TokenStream {
    match value {
        Some(value) => quote!(::core::option::Option::Some(#value)),
        None => quote!(::core::option::Option::None),
    }
}
