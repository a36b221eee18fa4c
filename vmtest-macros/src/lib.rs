//! `#[vmtest]`: placeholder until the expansion lands.
use proc_macro::TokenStream;

/// Registers a test that runs inside a VM.
#[proc_macro_attribute]
pub fn vmtest(_args: TokenStream, item: TokenStream) -> TokenStream {
    item
}
