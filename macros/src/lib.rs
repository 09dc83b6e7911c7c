//! `#[netref::service]`: a Rust trait declared once, served by its
//! implementations and called through a typed proxy. Use it through
//! `netref` (`netref::service`), which documents it; this crate only
//! writes the code.
//!
//! The expansion is a thin layer over netref's dynamic API
//! (`netref::typed`): it names only items of that module, so what it
//! writes is what a user could write by hand.
//!
//! - `model.rs` reads the trait and refuses what cannot cross the wire,
//!   each error pointing at the offending token and naming the fix;
//! - `server.rs` writes the trait back (an `async fn` as a `Send`
//!   future) and how an implementation is served;
//! - `proxy.rs` writes the typed proxy and its asynchronous view.

use proc_macro::TokenStream;
use syn::parse_macro_input;

mod model;
mod proxy;
mod server;

/// Declares a typed service: see `netref::service`.
#[proc_macro_attribute]
pub fn service(args: TokenStream, item: TokenStream) -> TokenStream {
    expand(args, item, Side::Both, "#[netref::service]")
}

/// Declares a typed proxy alone, for a server built otherwise: see
/// `netref::proxy`.
#[proc_macro_attribute]
pub fn proxy(args: TokenStream, item: TokenStream) -> TokenStream {
    expand(args, item, Side::Client, "#[netref::proxy]")
}

/// What the expansion writes.
#[derive(Clone, Copy, PartialEq)]
enum Side {
    /// The server's side (how an implementation is served) and the client's.
    Both,
    /// The client's side only: the proxy and the interface it checks.
    Client,
}

fn expand(args: TokenStream, item: TokenStream, side: Side, attribute: &str) -> TokenStream {
    if !args.is_empty() {
        let args = proc_macro2::TokenStream::from(args);
        return syn::Error::new_spanned(args, format!("{attribute} takes no arguments"))
            .to_compile_error()
            .into();
    }
    let item = parse_macro_input!(item as syn::Item);
    let original = match &item {
        syn::Item::Trait(t) => Some(t.clone()),
        _ => None,
    };
    match model::Service::read(item) {
        Ok(service) => {
            let mut out = server::interface(&service);
            if side == Side::Both {
                out.extend(server::expand(&service));
            }
            out.extend(proxy::expand(&service));
            out.into()
        }
        Err(e) => {
            let mut out = e.to_compile_error();
            out.extend(original.map(|t| quote::ToTokens::into_token_stream(model::without_netref_attrs(t))));
            out.into()
        }
    }
}
