//! The client side: `TraitProxy`, whose methods block (serving the
//! connection, so callbacks run meanwhile), and `TraitAsync`, its
//! `async_()` / `timed(d)` view whose methods return typed `AsyncResult`s.

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;

use crate::model::{Method, Output, Service};

pub(crate) fn expand(service: &Service) -> TokenStream {
    let ident = &service.ident;
    let vis = &service.vis;
    let proxy = format_ident!("{}Proxy", ident);
    let view = format_ident!("{}Async", ident);
    let proxy_doc = format!(
        "The typed proxy of [`{ident}`]: calls one of the peer's objects serving it (or one of \
         this side's own) by the trait's methods.\n\n\
         Each method blocks until its result is here, serving the connection meanwhile, so \
         callbacks into this side run while it waits. [`async_`]({proxy}::async_) and \
         [`timed`]({proxy}::timed) give the same methods returning \
         [`AsyncResult`](::netref::AsyncResult)s, which are also futures. Made by \
         [`{proxy}::root`], or received as an [`Obj<dyn {ident}>`](::netref::typed::Obj)."
    );
    let view_doc = format!(
        "[`{proxy}`]'s methods without waiting: each returns an \
         [`AsyncResult`](::netref::AsyncResult) (RPyC's `async_` and `timed`), which is also a \
         future. Made by [`{proxy}::async_`] and [`{proxy}::timed`]."
    );
    let root_doc = format!(
        "The peer's root object as a [`{ident}`], checked to expose the trait's methods (one \
         round trip): fails with [`Misuse::WrongInterface`](::netref::Misuse::WrongInterface) \
         naming what it lacks."
    );
    let from_remote_doc =
        format!("The peer's object `remote` as a [`{ident}`], checked as [`{proxy}::root`] checks the root.");
    let sync_methods = service.methods.iter().map(|m| sync_method(m, vis));
    let async_methods = service.methods.iter().map(|m| async_method(m, vis));
    let generics = crate::server::bounded(service);
    let (impl_generics, ty_generics, _) = generics.split_for_impl();
    let params = &service.item.generics.params;
    let type_args: Vec<_> = service.item.generics.type_params().map(|t| &t.ident).collect();
    // The proxy holds no value of its type parameters: `fn() -> (..)`
    // keeps it `Send + Sync` and free of their auto traits.
    let types = quote!(::core::marker::PhantomData<fn() -> (#(#type_args,)*)>);
    quote! {
        #[doc = #proxy_doc]
        #vis struct #proxy <#params> {
            handle: ::netref::typed::Handle,
            types: #types,
        }

        #[doc = #view_doc]
        #vis struct #view <#params> {
            handle: ::netref::typed::Handle,
            expiry: ::core::option::Option<::core::time::Duration>,
            types: #types,
        }

        impl #impl_generics ::core::clone::Clone for #proxy #ty_generics {
            fn clone(&self) -> Self {
                #proxy { handle: ::core::clone::Clone::clone(&self.handle), types: ::core::marker::PhantomData }
            }
        }

        impl #impl_generics ::core::fmt::Debug for #proxy #ty_generics {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                f.debug_tuple(::core::stringify!(#proxy)).field(&self.handle).finish()
            }
        }

        impl #impl_generics ::core::clone::Clone for #view #ty_generics {
            fn clone(&self) -> Self {
                #view {
                    handle: ::core::clone::Clone::clone(&self.handle),
                    expiry: self.expiry,
                    types: ::core::marker::PhantomData,
                }
            }
        }

        impl #impl_generics ::core::fmt::Debug for #view #ty_generics {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                f.debug_struct(::core::stringify!(#view))
                    .field("handle", &self.handle)
                    .field("expiry", &self.expiry)
                    .finish()
            }
        }

        impl #impl_generics ::netref::typed::Proxy for #proxy #ty_generics {
            fn from_handle(handle: ::netref::typed::Handle) -> Self {
                #proxy { handle, types: ::core::marker::PhantomData }
            }
            fn handle(&self) -> &::netref::typed::Handle {
                &self.handle
            }
        }

        impl #impl_generics #proxy #ty_generics {
            #[doc = #root_doc]
            #vis fn root(conn: &::netref::Connection) -> ::netref::Result<Self> {
                ::netref::typed::root::<dyn #ident #ty_generics>(conn)
            }

            #[doc = #from_remote_doc]
            #vis fn from_remote(remote: ::netref::RemoteObject) -> ::netref::Result<Self> {
                ::netref::typed::Obj::<dyn #ident #ty_generics>::from_remote(remote)
                    .map(|obj| ::core::clone::Clone::clone(obj.proxy()))
            }

            /// The same methods, each returning an `AsyncResult` at once
            /// (RPyC's `async_`).
            #vis fn async_(&self) -> #view #ty_generics {
                #view {
                    handle: ::core::clone::Clone::clone(&self.handle),
                    expiry: ::core::option::Option::None,
                    types: ::core::marker::PhantomData,
                }
            }

            /// The same methods, each returning an `AsyncResult` that
            /// expires after `timeout` (RPyC's `timed`): its value is then
            /// a timeout error.
            #vis fn timed(&self, timeout: ::core::time::Duration) -> #view #ty_generics {
                #view {
                    handle: ::core::clone::Clone::clone(&self.handle),
                    expiry: ::core::option::Option::Some(timeout),
                    types: ::core::marker::PhantomData,
                }
            }

            #(#sync_methods)*
        }

        impl #impl_generics #view #ty_generics {
            #(#async_methods)*
        }
    }
}

/// The parameters of a proxy method, and the argument tuple it sends: a
/// `Callback` is taken as anything converting into one (a closure).
fn parameters(m: &Method) -> (Vec<TokenStream>, TokenStream) {
    let params = m
        .args
        .iter()
        .map(|a| {
            let (id, ty) = (&a.ident, &a.ty);
            if a.callback {
                quote!(#id: impl ::core::convert::Into<#ty>)
            } else {
                quote!(#id: #ty)
            }
        })
        .collect();
    // Each converted where its type is written, so that a type serde
    // cannot write is reported there.
    let values = m.args.iter().map(|a| {
        let (id, ty) = (&a.ident, &a.ty);
        if a.callback {
            quote_spanned!(ty.span()=> ::netref::typed::__private::argument::<#ty>(&::core::convert::Into::into(#id)))
        } else {
            quote_spanned!(ty.span()=> ::netref::typed::__private::argument::<#ty>(&#id))
        }
    });
    let n = m.args.len();
    let args = quote! {
        ::core::iter::Iterator::collect::<::netref::Result<::std::vec::Vec<::netref::Value>>>(
            <[::netref::Result<::netref::Value>; #n] as ::core::iter::IntoIterator>::into_iter([#(#values),*])
        )
    };
    (params, args)
}

/// An event method: the peer's event, subscribed to later (nothing is
/// sent until then), the same on both views.
fn event_method(m: &Method, item: &syn::Type, vis: &syn::Visibility) -> TokenStream {
    let (ident, docs, name) = (&m.ident, &m.docs, m.wire_name());
    quote! {
        #(#docs)*
        #vis fn #ident(&self) -> ::netref::typed::Event<#item> {
            ::netref::typed::Event::of(::core::clone::Clone::clone(&self.handle), #name)
        }
    }
}

/// What a method's call gives: its value, and the error type.
fn result_types(m: &Method) -> (TokenStream, TokenStream, proc_macro2::Span) {
    match &m.output {
        Output::Event(item) => (quote!(::netref::typed::Event<#item>), quote!(::netref::Error), item.span()),
        Output::Value(ty) => (quote!(#ty), quote!(::netref::Error), ty.span()),
        Output::Fallible { ok, err } => (quote!(#ok), quote!(::netref::typed::CallError<#err>), ok.span()),
    }
}

fn sync_method(m: &Method, vis: &syn::Visibility) -> TokenStream {
    let (ident, docs, name) = (&m.ident, &m.docs, m.wire_name());
    if let Output::Event(item) = &m.output {
        return event_method(m, item, vis);
    }
    let (params, args) = parameters(m);
    let (ok, err, span) = result_types(m);
    // Spanned at the result type: a type serde cannot read is reported there.
    let call = quote_spanned!(span=> self.handle.call_method(#name, #args));
    quote! {
        #(#docs)*
        #vis fn #ident(&self, #(#params),*) -> ::core::result::Result<#ok, #err> {
            #call
        }
    }
}

fn async_method(m: &Method, vis: &syn::Visibility) -> TokenStream {
    let (ident, docs, name) = (&m.ident, &m.docs, m.wire_name());
    if let Output::Event(item) = &m.output {
        return event_method(m, item, vis);
    }
    let (params, args) = parameters(m);
    let (ok, err, _) = result_types(m);
    quote! {
        #(#docs)*
        #vis fn #ident(&self, #(#params),*) -> ::netref::AsyncResult<#ok, #err> {
            self.handle.async_method(#name, #args, self.expiry)
        }
    }
}
