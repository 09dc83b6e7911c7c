//! The trait as the expansion sees it: its methods, their arguments and
//! what they return, with everything that cannot cross the wire refused.

use proc_macro2::Span;
use syn::spanned::Spanned;
use syn::{
    Attribute, Error, FnArg, GenericArgument, Ident, Item, ItemTrait, Pat, PathArguments, ReturnType,
    Signature, TraitItem, TraitItemFn, Type, Visibility,
};

/// The most arguments a method takes (netref's argument tuples go to 8).
const MAX_ARGS: usize = 8;

/// Names the generated proxy defines itself: a method of the same name
/// would hide one of them (or be hidden).
const PROXY_OWN: &[&str] = &["root", "from_remote", "async_", "timed", "clone"];

/// A `#[netref::service]` trait.
pub(crate) struct Service {
    /// The trait as written, minus netref's attributes (written back).
    pub(crate) item: ItemTrait,
    pub(crate) vis: Visibility,
    pub(crate) ident: Ident,
    pub(crate) methods: Vec<Method>,
}

/// One method of the trait.
pub(crate) struct Method {
    pub(crate) ident: Ident,
    pub(crate) docs: Vec<Attribute>,
    pub(crate) is_async: bool,
    /// `#[netref(local)]` on an `async fn`: its future need not be `Send`
    /// (it is polled on the thread that started it).
    pub(crate) local: bool,
    pub(crate) args: Vec<Arg>,
    pub(crate) output: Output,
}

/// One argument of a method.
pub(crate) struct Arg {
    pub(crate) ident: Ident,
    pub(crate) ty: Type,
    /// `#[netref(default)]`: older callers may leave it out.
    pub(crate) default: bool,
    /// A `Callback<..>`: the proxy takes anything that converts into one
    /// (a closure).
    pub(crate) callback: bool,
}

/// What a method returns.
pub(crate) enum Output {
    /// A value (`()` when nothing is written).
    Value(Box<Type>),
    /// `Result<T, E>`: `E` is the method's own error.
    Fallible { ok: Box<Type>, err: Box<Type> },
    /// `Event<T>` of a `#[netref(event)]` method: `T` is what each event carries.
    Event(Box<Type>),
}

impl Service {
    /// Reads `item`, which must be a trait every method of which can cross
    /// the wire; every problem found is reported, not just the first.
    pub(crate) fn read(item: Item) -> syn::Result<Service> {
        let Item::Trait(mut item) = item else {
            return Err(Error::new(
                Span::call_site(),
                "#[netref::service] goes on a trait: `#[netref::service] pub trait Calculator { \
                 fn add(&self, a: i64, b: i64) -> i64; }`",
            ));
        };
        let mut errors = Errors::default();
        trait_level(&item, &mut errors);
        let mut methods = Vec::new();
        for trait_item in &mut item.items {
            match trait_item {
                TraitItem::Fn(f) => {
                    if let Some(m) = Method::read(f, &mut errors) {
                        methods.push(m);
                    }
                }
                TraitItem::Type(t) => errors.add(
                    t.span(),
                    "a service trait cannot have associated types: the peer has to know every type; \
                     name the concrete type in the methods instead",
                ),
                TraitItem::Const(c) => errors.add(
                    c.span(),
                    "a service trait cannot have associated consts: only methods cross the wire; \
                     make it a method returning the value",
                ),
                other => errors.add(other.span(), "a service trait holds methods only"),
            }
        }
        errors.finish()?;
        Ok(Service { vis: item.vis.clone(), ident: item.ident.clone(), item, methods })
    }
}

/// What is refused of the trait itself.
fn trait_level(item: &ItemTrait, errors: &mut Errors) {
    if let Some(unsafety) = &item.unsafety {
        errors.add(unsafety.span(), "a service trait cannot be `unsafe`");
    }
    if let Some(auto) = &item.auto_token {
        errors.add(auto.span(), "a service trait cannot be an auto trait");
    }
    for param in &item.generics.params {
        match param {
            syn::GenericParam::Type(t) if t.default.is_none() => {}
            syn::GenericParam::Type(t) => errors
                .add(t.span(), "a service trait's type parameter cannot have a default: name it at each use"),
            other => errors.add(
                other.span(),
                "a service trait takes type parameters only (netref adds their serde bounds): \
                 lifetimes and const parameters cannot cross the wire",
            ),
        }
    }
    if let Some(w) = &item.generics.where_clause {
        errors.add(
            w.span(),
            "a service trait cannot have a where clause: netref bounds each type parameter by \
             serde itself; put other bounds on the parameter (`T: Clone`)",
        );
    }
    if let Some(colon) = &item.colon_token {
        errors.add(
            colon.span().join(item.supertraits.span()).unwrap_or(colon.span()),
            "a service trait cannot have supertraits: netref adds `Send + Sync + 'static` itself; \
             move the other trait's methods into this one, or serve it as another object",
        );
    }
}

impl Method {
    /// Reads one method, removing netref's attributes from it.
    fn read(f: &mut TraitItemFn, errors: &mut Errors) -> Option<Method> {
        let before = errors.count();
        let netref_attrs = take_netref_attrs(&mut f.attrs);
        let (mut event, mut local) = (false, false);
        for attr in &netref_attrs {
            match attr.parse_args::<Ident>() {
                Ok(i) if i == "event" => event = true,
                Ok(i) if i == "local" => {
                    local = true;
                    if f.sig.asyncness.is_none() {
                        errors.add(
                            attr.span(),
                            "`#[netref(local)]` goes on an `async fn`: it lets the method's future \
                             hold values that are not `Send`, polled on the connection's own thread",
                        );
                    }
                }
                _ => errors.add(
                    attr.span(),
                    "unknown netref attribute on a method: expected `#[netref(event)]` or \
                     `#[netref(local)]` (and `#[netref(default)]` goes on an argument)",
                ),
            }
        }
        let sig = &mut f.sig;
        signature(sig, errors);
        let name = sig.ident.to_string();
        if PROXY_OWN.contains(&name.as_str()) {
            errors.add(
                sig.ident.span(),
                format!("a method named `{name}` would clash with the proxy's own `{name}`: rename it"),
            );
        }
        if name.starts_with("__") {
            errors.add(sig.ident.span(), "names starting with `__` are reserved: rename the method");
        }
        let args = arguments(sig, errors);
        let output = output(&sig.output, errors).and_then(|o| event_output(sig, o, event, errors));
        if errors.count() > before {
            return None;
        }
        Some(Method {
            ident: sig.ident.clone(),
            docs: f.attrs.iter().filter(|a| a.path().is_ident("doc")).cloned().collect(),
            is_async: sig.asyncness.is_some(),
            local,
            args: args?,
            output: output?,
        })
    }

    /// The method's name on the wire.
    pub(crate) fn wire_name(&self) -> String {
        self.ident.to_string()
    }

    /// How many arguments every call passes.
    pub(crate) fn required(&self) -> usize {
        self.args.iter().filter(|a| !a.default).count()
    }
}

/// What is refused of a method's signature apart from its arguments and result.
fn signature(sig: &Signature, errors: &mut Errors) {
    if let Some(c) = &sig.constness {
        errors.add(c.span(), "a service method cannot be `const`");
    }
    if let Some(u) = &sig.unsafety {
        errors.add(u.span(), "a service method cannot be `unsafe`: the peer cannot uphold its contract");
    }
    if let Some(abi) = &sig.abi {
        errors.add(abi.span(), "a service method cannot have an ABI");
    }
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        errors.add(
            sig.generics.span(),
            "a service method cannot be generic: the peer has to know each argument's type; \
             name concrete types",
        );
    }
    if let Some(v) = &sig.variadic {
        errors.add(v.span(), "a service method cannot be variadic");
    }
    match sig.inputs.first() {
        Some(FnArg::Receiver(r))
            if r.reference.is_some() && r.mutability.is_none() && r.colon_token.is_none() => {}
        Some(FnArg::Receiver(r)) if r.mutability.is_some() && r.reference.is_some() => errors.add(
            r.span(),
            "a service method takes `&self`, not `&mut self`: one object serves every caller at \
             once; keep what changes behind a `Mutex` (or an atomic)",
        ),
        Some(FnArg::Receiver(r)) => errors.add(
            r.span(),
            "a service method takes `&self`: the object stays where it is and serves every call",
        ),
        _ => errors.add(
            sig.ident.span(),
            "a service method needs a `&self` receiver: the peer calls it on an object \
             (`fn name(&self, ...)`)",
        ),
    }
}

/// The method's arguments after `&self`.
fn arguments(sig: &mut Signature, errors: &mut Errors) -> Option<Vec<Arg>> {
    let mut args = Vec::new();
    let mut ok = true;
    let mut seen_default = false;
    let count = sig.inputs.iter().filter(|a| matches!(a, FnArg::Typed(_))).count();
    if count > MAX_ARGS {
        errors.add(
            sig.inputs.span(),
            format!(
                "a service method takes at most {MAX_ARGS} arguments (this one takes {count}): \
                 group some into a struct that derives `Serialize` and `Deserialize`"
            ),
        );
        ok = false;
    }
    for input in sig.inputs.iter_mut() {
        let FnArg::Typed(pt) = input else { continue };
        let netref_attrs = take_netref_attrs(&mut pt.attrs);
        let mut default = false;
        for attr in &netref_attrs {
            if is_default(attr) {
                default = true;
            } else {
                errors.add(
                    attr.span(),
                    "unknown netref attribute on an argument: expected `#[netref(default)]`",
                );
                ok = false;
            }
        }
        if default {
            seen_default = true;
        } else if seen_default {
            errors.add(
                pt.span(),
                "a required argument cannot follow a `#[netref(default)]` one: older callers leave \
                 out the last arguments only; move the defaulted ones to the end",
            );
            ok = false;
        }
        let ident = match &*pt.pat {
            Pat::Ident(p) if p.by_ref.is_none() && p.subpat.is_none() => p.ident.clone(),
            other => {
                errors.add(
                    other.span(),
                    "name each argument (`pair: (i64, i64)`, not a pattern): the proxy's method \
                     takes it by that name",
                );
                ok = false;
                continue;
            }
        };
        if !argument_type(&pt.ty, errors) {
            ok = false;
            continue;
        }
        args.push(Arg { ident, callback: is_callback(&pt.ty), ty: (*pt.ty).clone(), default });
    }
    ok.then_some(args)
}

/// Whether an argument's type can cross the wire, as far as its syntax
/// tells (serde's bounds are checked by the compiler, at the type).
fn argument_type(ty: &Type, errors: &mut Errors) -> bool {
    let before = errors.count();
    match ty {
        Type::Reference(r) => {
            let instead = owned_form(&r.elem);
            errors.add(
                r.span(),
                format!("arguments cross the wire by value: take `{instead}` instead of a reference"),
            );
        }
        Type::ImplTrait(i) => errors.add(
            i.span(),
            "an argument needs a concrete type, which the peer can send: for a closure take \
             `Callback<(Args,)>`, for an object `Obj<dyn Trait>`",
        ),
        Type::BareFn(f) => errors.add(
            f.span(),
            "a function pointer cannot cross the wire: take a `Callback<(Args,), R>`, which a \
             closure converts into",
        ),
        Type::TraitObject(t) => errors.add(
            t.span(),
            "an argument needs a concrete type: for an object implementing a service trait take \
             `Obj<dyn Trait>`",
        ),
        _ => {}
    }
    mentions_self(ty, errors);
    if let Some(args) = last_segment_args(ty, "Callback") {
        match args.first() {
            Some(GenericArgument::Type(Type::Tuple(_))) => {}
            Some(other) => errors.add(
                other.span(),
                "a `Callback`'s arguments are a tuple: `Callback<(String,)>` for one, \
                 `Callback<()>` for none",
            ),
            None => {}
        }
    }
    errors.count() == before
}

/// `Self` cannot cross: the peer's side of it is a proxy.
fn mentions_self(ty: &Type, errors: &mut Errors) {
    let text = quote::quote!(#ty).to_string();
    if text.split(|c: char| !c.is_alphanumeric() && c != '_').any(|word| word == "Self") {
        errors.add(
            ty.span(),
            "`Self` cannot cross the wire (the peer's side of it is a proxy): name the object \
             `Obj<dyn Trait>`",
        );
    }
}

/// What to take instead of a reference to `elem`.
fn owned_form(elem: &Type) -> String {
    match elem {
        Type::Path(p) if p.path.is_ident("str") => "String".into(),
        Type::Slice(s) => {
            let inner = &s.elem;
            format!("Vec<{}>", quote::quote!(#inner))
        }
        Type::Path(p) if p.path.is_ident("Path") => "PathBuf".into(),
        other => quote::quote!(#other).to_string(),
    }
}

/// What the method returns.
fn output(ret: &ReturnType, errors: &mut Errors) -> Option<Output> {
    let ty = match ret {
        ReturnType::Default => return Some(Output::Value(Box::new(syn::parse_quote!(())))),
        ReturnType::Type(_, ty) => &**ty,
    };
    match ty {
        Type::Reference(r) => {
            let instead = owned_form(&r.elem);
            errors.add(
                r.span(),
                format!("results cross the wire by value: return `{instead}`, not a reference"),
            );
            return None;
        }
        Type::ImplTrait(i) => {
            errors.add(
                i.span(),
                "a result needs a concrete type, which the peer can read: for an asynchronous \
                 method write `async fn`",
            );
            return None;
        }
        _ => {}
    }
    let before = errors.count();
    mentions_self(ty, errors);
    if errors.count() > before {
        return None;
    }
    match last_segment_args(ty, "Result") {
        Some(args) => {
            let types: Vec<&Type> = args
                .iter()
                .filter_map(|a| match a {
                    GenericArgument::Type(t) => Some(t),
                    _ => None,
                })
                .collect();
            match types.as_slice() {
                [ok, err] => {
                    Some(Output::Fallible { ok: Box::new((*ok).clone()), err: Box::new((*err).clone()) })
                }
                _ => {
                    errors.add(
                        ty.span(),
                        "write the error type out: `Result<T, E>` with an `E` that derives \
                         `Serialize` and `Deserialize` and implements `Display` (an \
                         `io::Result`'s `io::Error` cannot cross the wire)",
                    );
                    None
                }
            }
        }
        None => Some(Output::Value(Box::new(ty.clone()))),
    }
}

/// What an event method returns (`Event<T>` gives [`Output::Event`]), and
/// what is refused of one; a method returning an `Event` unmarked is
/// refused too.
fn event_output(sig: &Signature, output: Output, event: bool, errors: &mut Errors) -> Option<Output> {
    let item = match &output {
        Output::Value(ty) => last_segment_args(ty, "Event").and_then(|args| match args.first() {
            Some(GenericArgument::Type(t)) if args.len() == 1 => Some(t.clone()),
            _ => None,
        }),
        _ => None,
    };
    if !event {
        if item.is_some() {
            let at = match &sig.output {
                ReturnType::Type(_, ty) => ty.span(),
                ReturnType::Default => sig.ident.span(),
            };
            errors.add(
                at,
                "a method returning an `Event` is an event: mark it `#[netref(event)]`, so that \
                 the peer subscribes to it instead of reading it",
            );
            return None;
        }
        return Some(output);
    }
    let before = errors.count();
    if let Some(a) = &sig.asyncness {
        errors.add(
            a.span(),
            "an event method cannot be `async`: it gives the server's `Event<T>` at once, which \
             the server emits to whenever it likes",
        );
    }
    let args: Vec<_> = sig.inputs.iter().filter(|a| matches!(a, FnArg::Typed(_))).collect();
    if let (Some(first), Some(last)) = (args.first(), args.last()) {
        errors.add(
            first.span().join(last.span()).unwrap_or(first.span()),
            "an event method takes no arguments: each subscriber chooses only how its queue \
             behaves (`Subscribe`); for events of a kind, declare another event, or filter in \
             the subscriber",
        );
    }
    match item {
        Some(t) if errors.count() == before => Some(Output::Event(Box::new(t))),
        Some(_) => None,
        None => {
            errors.add(
                match &sig.output {
                    ReturnType::Default => sig.ident.span(),
                    ReturnType::Type(_, ty) => ty.span(),
                },
                "a `#[netref(event)]` method returns `Event<T>`: the server's event, which it \
                 emits to and the peer subscribes to (`fn changed(&self) -> Event<(String, u64)>`)",
            );
            None
        }
    }
}

/// The generic arguments of `ty` when its path's last segment is `name`.
fn last_segment_args<'a>(
    ty: &'a Type,
    name: &str,
) -> Option<&'a syn::punctuated::Punctuated<GenericArgument, syn::token::Comma>> {
    let Type::Path(p) = ty else { return None };
    let last = p.path.segments.last()?;
    if last.ident != name {
        return None;
    }
    match &last.arguments {
        PathArguments::AngleBracketed(a) => Some(&a.args),
        _ => None,
    }
}

fn is_callback(ty: &Type) -> bool {
    last_segment_args(ty, "Callback").is_some()
}

/// The trait without netref's attributes, as written back next to the
/// errors when it is refused: the rest of the user's crate still finds it,
/// so the errors shown are the macro's alone.
pub(crate) fn without_netref_attrs(mut item: ItemTrait) -> ItemTrait {
    for trait_item in &mut item.items {
        if let TraitItem::Fn(f) = trait_item {
            take_netref_attrs(&mut f.attrs);
            for input in f.sig.inputs.iter_mut() {
                if let FnArg::Typed(pt) = input {
                    take_netref_attrs(&mut pt.attrs);
                }
            }
        }
    }
    item
}

/// Removes and returns the `#[netref(..)]` attributes.
fn take_netref_attrs(attrs: &mut Vec<Attribute>) -> Vec<Attribute> {
    let (netref, rest) = std::mem::take(attrs).into_iter().partition(|a| a.path().is_ident("netref"));
    *attrs = rest;
    netref
}

fn is_default(attr: &Attribute) -> bool {
    attr.parse_args::<Ident>().is_ok_and(|i| i == "default")
}

/// Every problem found, reported together.
#[derive(Default)]
struct Errors(Option<Error>, usize);

impl Errors {
    fn add(&mut self, span: Span, message: impl std::fmt::Display) {
        let e = Error::new(span, message);
        match &mut self.0 {
            Some(all) => all.combine(e),
            None => self.0 = Some(e),
        }
        self.1 += 1;
    }

    fn count(&self) -> usize {
        self.1
    }

    fn finish(self) -> syn::Result<()> {
        self.0.map_or(Ok(()), Err)
    }
}
