//! The server side: the trait written back, how an implementation is
//! served (`impl Interface for dyn Trait`), and the checks that point the
//! compiler's errors at the user's types.

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::{parse_quote, ReturnType, TraitItem};

use crate::model::{Method, Output, Service};

/// The trait written back and its `Interface`: what both sides need.
pub(crate) fn interface(service: &Service) -> TokenStream {
    let written = trait_written_back(service);
    let ident = &service.ident;
    let name = ident.to_string();
    let proxy = format_ident!("{}Proxy", ident);
    let wire_names = service.methods.iter().map(Method::wire_name);
    let generics = bounded(service);
    let (impl_generics, ty_generics, _) = generics.split_for_impl();
    quote! {
        #written

        impl #impl_generics ::netref::typed::Interface for dyn #ident #ty_generics {
            const NAME: &'static str = #name;
            const METHODS: &'static [&'static str] = &[#(#wire_names),*];
            type Proxy = #proxy #ty_generics;
        }
    }
}

/// The trait's generics with what each type parameter needs to cross the
/// wire and to be shared between threads: serde both ways, `Send`,
/// `Sync`, `'static`.
pub(crate) fn bounded(service: &Service) -> syn::Generics {
    let mut generics = service.item.generics.clone();
    for param in generics.type_params_mut() {
        param.bounds.push(parse_quote!(::netref::typed::__private::serde::Serialize));
        param.bounds.push(parse_quote!(::netref::typed::__private::serde::de::DeserializeOwned));
        param.bounds.push(parse_quote!(::core::marker::Send));
        param.bounds.push(parse_quote!(::core::marker::Sync));
        param.bounds.push(parse_quote!('static));
    }
    generics
}

/// How an implementation is served.
pub(crate) fn expand(service: &Service) -> TokenStream {
    let ident = &service.ident;
    let methods = service.methods.iter().map(export_method);
    let generics = bounded(service);
    let (_, ty_generics, _) = generics.split_for_impl();
    let params = &generics.params;
    quote! {
        impl<__NetrefImpl: #ident #ty_generics, #params> ::netref::typed::ServedBy<__NetrefImpl> for dyn #ident #ty_generics {
            fn serve(this: ::std::sync::Arc<__NetrefImpl>) -> ::netref::LocalObject {
                let erased: ::std::sync::Arc<dyn #ident #ty_generics> = ::std::sync::Arc::<__NetrefImpl>::clone(&this);
                ::netref::typed::Export::new(this, erased)
                    #(#methods)*
                    .build()
            }
        }
    }
}

/// The trait as declared, shareable across threads, with each `async fn`
/// a method returning a `Send` future (a connection's thread polls it;
/// `#[netref(local)]`: not `Send`, polled on the thread that started it),
/// left out of the trait object. Implementations still write `async fn`.
fn trait_written_back(service: &Service) -> TokenStream {
    let mut item = service.item.clone();
    item.generics = bounded(service);
    item.supertraits.push(parse_quote!(::core::marker::Send));
    item.supertraits.push(parse_quote!(::core::marker::Sync));
    item.supertraits.push(parse_quote!('static));
    if item.colon_token.is_none() {
        item.colon_token = Some(Default::default());
    }
    for trait_item in &mut item.items {
        let TraitItem::Fn(f) = trait_item else { continue };
        if f.sig.asyncness.take().is_none() {
            continue;
        }
        let output = match &f.sig.output {
            ReturnType::Default => quote!(()),
            ReturnType::Type(_, ty) => quote!(#ty),
        };
        let local = service.methods.iter().any(|m| m.ident == f.sig.ident && m.local);
        f.sig.output = if local {
            // `#[netref(local)]`: polled on the thread that started it.
            parse_quote!(-> impl ::core::future::Future<Output = #output>)
        } else {
            parse_quote!(-> impl ::core::future::Future<Output = #output> + ::core::marker::Send)
        };
        // A trait object cannot call it (its future's type is the
        // implementation's), which keeps `dyn Trait` a type: the
        // implementation serves it where its type is known (`ServedBy`).
        f.sig.generics.where_clause = Some(parse_quote!(where Self: ::core::marker::Sized));
        if let Some(body) = f.default.take() {
            f.default = Some(parse_quote!({ async move #body }));
            f.attrs.push(parse_quote!(#[allow(clippy::manual_async_fn)]));
        }
    }
    quote!(#item)
}

/// One method's entry in the `Export`.
fn export_method(m: &Method) -> TokenStream {
    let name = m.wire_name();
    let ident = &m.ident;
    if let Output::Event(item) = &m.output {
        return export_event(&name, ident, item);
    }
    let required = m.required();
    let total = m.args.len();
    // Mixed-site names: an argument called `this` or `args` stays the user's.
    let this = syn::Ident::new("this", Span::mixed_site());
    let args = syn::Ident::new("args", Span::mixed_site());
    let bind = m.args.iter().map(|a| {
        let (id, ty) = (&a.ident, &a.ty);
        // Spanned at the type: a type serde cannot read is reported there.
        if a.default {
            quote_spanned!(ty.span()=> let #id: #ty = #args.take_or_default()?;)
        } else {
            quote_spanned!(ty.span()=> let #id: #ty = #args.take()?;)
        }
    });
    let names = m.args.iter().map(|a| &a.ident);
    // For peers that pass arguments by name (Python's keyword arguments).
    let param_names = m.args.iter().map(|a| a.ident.unraw().to_string());
    let parameters = quote!(.parameters(#name, &[#(#param_names),*]));
    // The answer is converted where the result type is written, so that
    // a type serde cannot write is reported there.
    let (reply, span) = match &m.output {
        Output::Value(ty) => (quote_spanned!(ty.span()=> ::netref::typed::reply::<#ty>), ty.span()),
        Output::Fallible { ok, err } => {
            (quote_spanned!(ok.span()=> ::netref::typed::reply_result::<#ok, #err>), ok.span())
        }
        Output::Event(_) => unreachable!("an event method is exported by `export_event`"),
    };
    let arity = quote!(::netref::typed::Arity { required: #required, total: #total });
    let callee = syn::Ident::new("callee", Span::mixed_site());
    if m.is_async {
        let answer = quote_spanned!(span=> #reply(&#callee, #this.#ident(#(#names),*).await));
        let register = if m.local { quote!(local_async_method) } else { quote!(async_method) };
        quote! {
            .#register(#name, #arity, |#this: &::std::sync::Arc<__NetrefImpl>, #args: &mut ::netref::typed::Args| {
                #(#bind)*
                let #this = ::std::sync::Arc::clone(#this);
                // Owned: the future outlives the arguments.
                let #callee = ::std::sync::Arc::clone(#args.callee());
                ::core::result::Result::Ok(async move { #answer })
            })
            #parameters
        }
    } else {
        let answer = quote_spanned!(span=> #reply(#args.callee(), #this.#ident(#(#names),*)));
        quote! {
            .method(#name, #arity, |#this: &__NetrefImpl, #args: &mut ::netref::typed::Args| {
                #(#bind)*
                #answer
            })
            #parameters
        }
    }
}

/// An event method's entry: a call of it subscribes (its one optional
/// argument is the subscription's options) and answers the subscription.
fn export_event(name: &str, ident: &syn::Ident, item: &syn::Type) -> TokenStream {
    let this = syn::Ident::new("this", Span::mixed_site());
    let args = syn::Ident::new("args", Span::mixed_site());
    // Spanned at the event's type: one serde cannot carry is reported there.
    let check = quote_spanned!(item.span()=> ::netref::typed::__private::event_item::<#item>());
    quote! {
        .method(#name, ::netref::typed::Arity { required: 0, total: 1 }, |#this: &__NetrefImpl, #args: &mut ::netref::typed::Args| {
            #check;
            ::netref::typed::Event::serve_subscribe(&#this.#ident(), #args)
        })
    }
}
