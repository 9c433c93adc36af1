//! How inputs enter the index: storing each object, keeping the reverse indices (pods by namespace and
//! node, Services by selector, EndpointSlices by pod and Service, objects by the waypoint they name), and
//! marking what an object's arrival, change or removal makes dirty. Nothing is computed here; the
//! recomputation of what is dirty is in `recompute`.

use super::*;

impl Index {
    pub(super) fn insert(&mut self, obj: Object) {
        match obj {
            Object::Namespace(ns) => self.insert_namespace(ns),
            Object::Node(node) => {
                let name = node.name.clone();
                if self.nodes.get(&name) != Some(&node) {
                    self.nodes.insert(name.clone(), node);
                    self.mark_node(&name);
                }
            }
            Object::Pod(pod) => self.insert_pod(pod),
            Object::Service(svc) => self.insert_service(*svc),
            Object::EndpointSlice(slice) => self.insert_slice(*slice),
            Object::GatewayClass(class) => {
                let name = class.meta.name.clone();
                self.classes.insert(name.clone(), class);
                self.mark_class(&name);
            }
            Object::Gateway(gw) => {
                let k = key(&gw.meta.namespace, &gw.meta.name);
                self.gateways.insert(k.clone(), *gw);
                self.mark(|d| d.gateways.insert(k));
            }
            Object::HttpRoute(r) => {
                self.routes.insert(key(&r.meta.namespace, &r.meta.name), *r);
            }
            Object::AuthorizationPolicy(p) => self.insert_authorization_policy(*p),
            Object::PeerAuthentication(p) => self.insert_peer_authentication(*p),
        }
    }

    pub(super) fn remove(&mut self, obj: &ObjectRef) {
        let k = key(&obj.namespace, &obj.name);
        match obj.kind {
            Kind::Namespace => {
                if let Some(old) = self.namespaces.remove(&obj.name) {
                    self.namespace_changed(&old, None);
                }
            }
            Kind::Node => {
                if self.nodes.remove(&obj.name).is_some() {
                    self.mark_node(&obj.name);
                }
            }
            Kind::Pod => {
                if let Some(old) = self.pods.remove(&k) {
                    self.unlink_pod(&k, &old);
                    self.mark(|d| d.pods.insert(k));
                }
            }
            Kind::Service => {
                if let Some(old) = self.services.remove(&k) {
                    if let Some(set) = self.services_by_namespace.get_mut(&obj.namespace) {
                        set.remove(&k);
                    }
                    self.unindex_selector(&k, &old);
                    self.track_waypoint_user(obj, Some(&old.meta.labels), None, &obj.namespace);
                    self.service_changed(&k, Some(&old), None);
                }
            }
            Kind::EndpointSlice => {
                if let Some(old) = self.slices.remove(&k) {
                    self.unlink_slice(&k, &old);
                    self.mark_slice_pods(&old);
                    self.mark(|d| d.slices.insert(k));
                }
            }
            Kind::GatewayClass => {
                if self.classes.remove(&obj.name).is_some() {
                    self.mark_class(&obj.name);
                }
            }
            Kind::Gateway => {
                if self.gateways.remove(&k).is_some() {
                    self.mark(|d| d.gateways.insert(k));
                }
            }
            Kind::HttpRoute => {
                self.routes.remove(&k);
            }
            Kind::AuthorizationPolicy => self.remove_authorization_policy(&k),
            Kind::PeerAuthentication => self.remove_peer_authentication(&k),
        }
    }

    /// Records a recomputation, unless a full build is under way.
    fn mark(&mut self, f: impl FnOnce(&mut Dirty) -> bool) {
        if !self.loading {
            f(&mut self.dirty);
        }
    }

    fn insert_namespace(&mut self, ns: Namespace) {
        let name = ns.meta.name.clone();
        let old = self.namespaces.insert(name.clone(), ns);
        let new = self.namespaces.get(&name).cloned();
        match old {
            Some(old) if Some(&old) == new.as_ref() => {}
            Some(old) => self.namespace_changed(&old, new.as_ref()),
            None => {
                if let Some(new) = new {
                    self.namespace_changed(&new, Some(&new));
                }
            }
        }
    }

    /// A namespace appeared, changed or vanished: its pods and Services are recomputed; a change of the
    /// system namespace's network label recomputes everything.
    fn namespace_changed(&mut self, old: &Namespace, new: Option<&Namespace>) {
        let name = &old.meta.name;
        if *name == self.settings.system_namespace {
            let network = new
                .and_then(|n| n.meta.labels.get(NETWORK))
                .unwrap_or_default()
                .to_string();
            if network != self.network {
                self.network = network;
                self.mark(|d| {
                    d.all = true;
                    true
                });
            }
        }
        if self.loading {
            return;
        }
        let pods: Vec<Key> = self
            .pods_by_namespace
            .get(name)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default();
        let services: Vec<Key> = self
            .services_by_namespace
            .get(name)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default();
        self.dirty.pods.extend(pods);
        self.dirty.services.extend(services);
    }

    fn mark_node(&mut self, node: &str) {
        if self.loading {
            return;
        }
        if let Some(pods) = self.pods_by_node.get(node) {
            self.dirty.pods.extend(pods.iter().cloned());
        }
    }

    fn mark_class(&mut self, class: &str) {
        if self.loading {
            return;
        }
        let gateways: Vec<Key> = self
            .gateways
            .iter()
            .filter(|(_, g)| g.class == class)
            .map(|(k, _)| k.clone())
            .collect();
        self.dirty.gateways.extend(gateways);
    }

    /// Keeps `waypoint_users` in step with an object's own `use-waypoint` labels.
    fn track_waypoint_user(
        &mut self,
        obj: &ObjectRef,
        old: Option<&crate::model::Labels>,
        new: Option<&crate::model::Labels>,
        namespace: &str,
    ) {
        let old_key = old.and_then(|l| Request::from_labels(l, namespace)?.key());
        let new_key = new.and_then(|l| Request::from_labels(l, namespace)?.key());
        if old_key == new_key {
            return;
        }
        if let Some(k) = old_key
            && let Some(set) = self.waypoint_users.get_mut(&k)
        {
            set.remove(obj);
            if set.is_empty() {
                self.waypoint_users.remove(&k);
            }
        }
        if let Some(k) = new_key {
            self.waypoint_users
                .entry(k)
                .or_default()
                .insert(obj.clone());
        }
    }

    fn insert_pod(&mut self, pod: Box<Pod>) {
        let k = key(&pod.meta.namespace, &pod.meta.name);
        let obj = ObjectRef::new(Kind::Pod, &pod.meta.namespace, &pod.meta.name);
        let old = self.pods.remove(&k);
        if old.as_ref() == Some(&pod) {
            self.pods.insert(k, pod);
            return;
        }
        if let Some(old) = &old {
            self.unlink_pod(&k, old);
        }
        self.pods_by_namespace
            .entry(pod.meta.namespace.clone())
            .or_default()
            .insert(k.clone());
        if !pod.node.is_empty() {
            self.pods_by_node
                .entry(pod.node.clone())
                .or_default()
                .insert(k.clone());
        }
        self.track_waypoint_user(&obj, None, Some(&pod.meta.labels), &pod.meta.namespace);
        self.pods.insert(k.clone(), pod);
        self.mark(|d| d.pods.insert(k));
    }

    fn unlink_pod(&mut self, k: &Key, pod: &Pod) {
        if let Some(set) = self.pods_by_namespace.get_mut(&pod.meta.namespace) {
            set.remove(k);
            if set.is_empty() {
                self.pods_by_namespace.remove(&pod.meta.namespace);
            }
        }
        if let Some(set) = self.pods_by_node.get_mut(&pod.node) {
            set.remove(k);
            if set.is_empty() {
                self.pods_by_node.remove(&pod.node);
            }
        }
        let obj = ObjectRef::new(Kind::Pod, &pod.meta.namespace, &pod.meta.name);
        self.track_waypoint_user(&obj, Some(&pod.meta.labels), None, &pod.meta.namespace);
    }

    fn insert_service(&mut self, svc: Service) {
        let k = key(&svc.meta.namespace, &svc.meta.name);
        let obj = ObjectRef::new(Kind::Service, &svc.meta.namespace, &svc.meta.name);
        let old = self.services.remove(&k);
        if old.as_ref() == Some(&svc) {
            self.services.insert(k, svc);
            return;
        }
        self.services_by_namespace
            .entry(svc.meta.namespace.clone())
            .or_default()
            .insert(k.clone());
        if let Some(old) = &old {
            self.unindex_selector(&k, old);
        }
        self.index_selector(&k, &svc);
        self.track_waypoint_user(
            &obj,
            old.as_ref().map(|o| &o.meta.labels),
            Some(&svc.meta.labels),
            &svc.meta.namespace,
        );
        self.services.insert(k.clone(), svc.clone());
        self.service_changed(&k, old.as_ref(), Some(&svc));
    }

    fn index_selector(&mut self, k: &Key, svc: &Service) {
        if let Some((lk, lv)) = selector_anchor(svc) {
            self.services_by_selector
                .entry(svc.meta.namespace.clone())
                .or_default()
                .entry(lk.into())
                .or_default()
                .entry(lv.into())
                .or_default()
                .insert(k.clone());
        }
    }

    fn unindex_selector(&mut self, k: &Key, svc: &Service) {
        let Some((lk, lv)) = selector_anchor(svc) else {
            return;
        };
        let Some(by_key) = self.services_by_selector.get_mut(&svc.meta.namespace) else {
            return;
        };
        if let Some(by_value) = by_key.get_mut(lk) {
            if let Some(set) = by_value.get_mut(lv) {
                set.remove(k);
                if set.is_empty() {
                    by_value.remove(lv);
                }
            }
            if by_value.is_empty() {
                by_key.remove(lk);
            }
        }
        if by_key.is_empty() {
            self.services_by_selector.remove(&svc.meta.namespace);
        }
    }

    /// A Service changed: recompute it, the pods it gained or lost (or all its pods when what pods see of
    /// it changed), and the EndpointSlice workloads that depend on it.
    fn service_changed(&mut self, k: &Key, old: Option<&Service>, new: Option<&Service>) {
        if self.loading {
            return;
        }
        self.dirty.services.insert(k.clone());
        let (namespace, _) = split(k);
        let seen_by_pods = |s: &Service| (s.ports.clone(), services::usable(s).is_ok());
        let pods_see_same = match (old, new) {
            (Some(o), Some(n)) => seen_by_pods(o) == seen_by_pods(n),
            _ => false,
        };
        let mut affected: Vec<Key> = Vec::new();
        if let Some(pods) = self.pods_by_namespace.get(namespace) {
            for pk in pods {
                let Some(pod) = self.pods.get(pk) else {
                    continue;
                };
                let selects = |s: Option<&Service>| {
                    s.and_then(|s| s.selector.as_ref())
                        .is_some_and(|sel| pod.meta.labels.is_superset_of(sel))
                };
                let (was, is) = (selects(old), selects(new));
                if (was != is) || (!pods_see_same && (was || is)) {
                    affected.push(pk.clone());
                }
            }
        }
        let slices: Vec<Key> = self
            .slices_by_service
            .get(k)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default();
        for sk in &slices {
            if let Some(slice) = self.slices.get(sk) {
                affected.extend(slice_pod_keys(slice));
            }
        }
        self.dirty.pods.extend(affected);
        self.dirty.slices.extend(slices);
    }

    fn insert_slice(&mut self, slice: EndpointSlice) {
        let k = key(&slice.meta.namespace, &slice.meta.name);
        let old = self.slices.remove(&k);
        if old.as_ref() == Some(&slice) {
            self.slices.insert(k, slice);
            return;
        }
        if let Some(old) = &old {
            self.unlink_slice(&k, old);
            self.mark_slice_pods(old);
        }
        for pk in slice_pod_keys(&slice) {
            self.slices_by_pod.entry(pk).or_default().insert(k.clone());
        }
        if let Some(svc) = &slice.service_name {
            self.slices_by_service
                .entry(key(&slice.meta.namespace, svc))
                .or_default()
                .insert(k.clone());
        }
        self.mark_slice_pods(&slice);
        self.slices.insert(k.clone(), slice);
        self.mark(|d| d.slices.insert(k));
    }

    fn unlink_slice(&mut self, k: &Key, slice: &EndpointSlice) {
        for pk in slice_pod_keys(slice) {
            if let Some(set) = self.slices_by_pod.get_mut(&pk) {
                set.remove(k);
                if set.is_empty() {
                    self.slices_by_pod.remove(&pk);
                }
            }
        }
        if let Some(svc) = &slice.service_name {
            let sk = key(&slice.meta.namespace, svc);
            if let Some(set) = self.slices_by_service.get_mut(&sk) {
                set.remove(k);
                if set.is_empty() {
                    self.slices_by_service.remove(&sk);
                }
            }
        }
    }

    fn mark_slice_pods(&mut self, slice: &EndpointSlice) {
        if self.loading {
            return;
        }
        self.dirty.pods.extend(slice_pod_keys(slice));
    }
}

/// Keys of the pods an EndpointSlice's endpoints reference by `targetRef`.
fn slice_pod_keys(slice: &EndpointSlice) -> Vec<Key> {
    slice
        .endpoints
        .iter()
        .filter_map(|e| e.target_ref.as_ref())
        .filter(|r| r.kind == "Pod" && !r.name.is_empty())
        .map(|r| {
            let ns = if r.namespace.is_empty() {
                &slice.meta.namespace
            } else {
                &r.namespace
            };
            key(ns, &r.name)
        })
        .collect()
}
