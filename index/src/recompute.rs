//! Recomputation: turning what is dirty into resources. Waypoints first (their change widens what is
//! dirty), then Services, pods and EndpointSlice workloads, each built by the pure conversions of
//! `services`, `workloads` and `waypoints` and stored in the tables, which report what changed.

use super::*;

impl Index {
    pub(super) fn flush(&mut self) {
        let mut dirty = std::mem::take(&mut self.dirty);
        if dirty.all {
            dirty.gateways.extend(self.gateways.keys().cloned());
            dirty.gateways.extend(self.waypoints.keys().cloned());
            dirty.services.extend(self.services.keys().cloned());
            dirty.pods.extend(self.pods.keys().cloned());
            dirty.slices.extend(self.slices.keys().cloned());
        }
        let gateways: Vec<Key> = dirty.gateways.drain().collect();
        for gk in &gateways {
            if self.recompute_waypoint(gk) && !dirty.all {
                self.waypoint_dependents(gk, &mut dirty);
            }
        }
        for sk in &dirty.services {
            self.recompute_service(sk);
        }
        for pk in &dirty.pods {
            self.recompute_pod(pk);
        }
        for sk in &dirty.slices {
            self.recompute_slice(sk);
        }
    }

    /// Recomputes one waypoint; true when it changed (appeared, vanished or differs).
    fn recompute_waypoint(&mut self, gk: &Key) -> bool {
        let new = self.gateways.get(gk).and_then(|gw| {
            waypoints::waypoint_for_gateway(gw, self.classes.get(&gw.class), &self.network)
        });
        let old = match &new {
            Some(wp) => self.waypoints.insert(gk.clone(), wp.clone()),
            None => self.waypoints.remove(gk),
        };
        old != new
    }

    /// Everything that may bind to, or be an instance of, waypoint `gk`.
    fn waypoint_dependents(&self, gk: &Key, dirty: &mut Dirty) {
        let (gw_namespace, gw_name) = split(gk);
        let mut namespaces: Vec<&str> = self
            .namespaces
            .values()
            .filter(|ns| {
                Request::from_labels(&ns.meta.labels, &ns.meta.name)
                    .and_then(|r| r.key())
                    .is_some_and(|k| *k == **gk)
            })
            .map(|ns| ns.meta.name.as_str())
            .collect();
        namespaces.push(gw_namespace);
        for ns in namespaces {
            if let Some(pods) = self.pods_by_namespace.get(ns) {
                for pk in pods {
                    let Some(pod) = self.pods.get(pk) else {
                        continue;
                    };
                    let inherits = !pod
                        .meta
                        .labels
                        .contains_key(crate::model::well_known::USE_WAYPOINT);
                    let instance =
                        ns == gw_namespace && pod.meta.labels.get(GATEWAY_NAME) == Some(gw_name);
                    if inherits || instance {
                        dirty.pods.insert(pk.clone());
                    }
                }
            }
            if let Some(services) = self.services_by_namespace.get(ns) {
                dirty.services.extend(services.iter().cloned());
            }
        }
        if let Some(users) = self.waypoint_users.get(&**gk) {
            for user in users {
                let uk = key(&user.namespace, &user.name);
                match user.kind {
                    Kind::Pod => dirty.pods.insert(uk),
                    _ => dirty.services.insert(uk),
                };
            }
        }
    }

    fn set_address(&mut self, name: &str, value: Option<address::Type>) {
        let value = value.map(|t| Address { r#type: Some(t) });
        self.addresses.store(
            &mut self.changes.addresses,
            !self.loading,
            name,
            value.as_ref(),
        );
    }

    fn set_condition(&mut self, obj: ObjectRef, condition: Option<Condition>) {
        match condition {
            Some(c) => {
                self.conditions.insert(obj, c);
            }
            None => {
                self.conditions.remove(&obj);
            }
        }
    }

    pub(super) fn bind(
        &self,
        target: Target,
        labels: &crate::model::Labels,
        namespace: &str,
    ) -> Binding {
        let ns_labels = self.namespaces.get(namespace).map(|n| &n.meta.labels);
        waypoints::bind(target, labels, namespace, ns_labels, |k| {
            self.waypoints.get(k)
        })
    }

    fn recompute_service(&mut self, sk: &Key) {
        let (namespace, name) = split(sk);
        let obj = ObjectRef::new(Kind::Service, namespace, name);
        let resource_name = services::resource_name(name, namespace, &self.settings.domain_suffix);
        let Some(svc) = self.services.get(sk) else {
            self.set_address(&resource_name, None);
            self.set_condition(obj, None);
            return;
        };
        let mut binding = self.bind(Target::Service, &svc.meta.labels, namespace);
        if let Some(c) = binding.condition.as_mut().filter(|c| c.status) {
            c.message.push_str(services::ingress_message_suffix(
                &svc.meta.labels,
                self.namespaces.get(namespace),
            ));
        }
        let built = services::build_service(
            &self.settings,
            &self.network,
            svc,
            self.namespaces.get(namespace),
            &binding,
        );
        let (value, condition) = match built {
            Ok(s) => (Some(address::Type::Service(s)), binding.condition),
            Err(services::Skip::ExternalName) => (None, None),
            Err(services::Skip::BadClusterIp(ip)) => (
                None,
                Some(Condition::new(
                    "ambientd.io/Skipped",
                    false,
                    "InvalidClusterIP",
                    format!("cluster IP {ip:?} does not parse; the Service is not sent"),
                )),
            ),
        };
        self.set_address(&resource_name, value);
        self.set_condition(obj, condition);
    }

    /// The Services a pod belongs to: same-namespace selector matches, and selectorless Services whose
    /// EndpointSlice names this pod (kind, name and uid) in a `targetRef`.
    fn services_for_pod(&self, pk: &Key, pod: &Pod) -> Vec<&Service> {
        let mut out: BTreeMap<&str, &Service> = BTreeMap::new();
        if let Some(by_key) = self.services_by_selector.get(&pod.meta.namespace) {
            for (lk, lv) in pod.meta.labels.iter() {
                let Some(keys) = by_key.get(lk).and_then(|by_value| by_value.get(lv)) else {
                    continue;
                };
                for sk in keys {
                    let Some(svc) = self.services.get(sk) else {
                        continue;
                    };
                    if svc
                        .selector
                        .as_ref()
                        .is_some_and(|sel| pod.meta.labels.is_superset_of(sel))
                        && services::usable(svc).is_ok()
                    {
                        out.insert(sk, svc);
                    }
                }
            }
        }
        for slice_key in self.slices_by_pod.get(pk).into_iter().flatten() {
            let Some(slice) = self.slices.get(slice_key) else {
                continue;
            };
            let references = slice.endpoints.iter().any(|e| {
                e.target_ref.as_ref().is_some_and(|r| {
                    r.kind == "Pod"
                        && r.name == pod.meta.name
                        && r.uid == pod.meta.uid
                        && (r.namespace.is_empty() || r.namespace == pod.meta.namespace)
                })
            });
            if !references {
                continue;
            }
            let Some(svc_name) = &slice.service_name else {
                continue;
            };
            let sk = key(&slice.meta.namespace, svc_name);
            if let Some((sk, svc)) = self.services.get_key_value(&sk)
                && svc.selector.is_none()
                && services::usable(svc).is_ok()
            {
                out.insert(sk, svc);
            }
        }
        out.into_values().collect()
    }

    fn recompute_pod(&mut self, pk: &Key) {
        let (namespace, name) = split(pk);
        let uid = workloads::pod_uid(&self.settings.cluster_id, namespace, name);
        let Some(pod) = self.pods.get(pk) else {
            self.set_address(&uid, None);
            self.set_pod_condition(pk, None);
            return;
        };
        let instance = waypoints::instance_of(&pod.meta.labels, namespace)
            .and_then(|k| self.waypoints.get(k.as_str()));
        let (binding, application_tunnel) = match instance {
            Some(wp) => (Binding::default(), wp.application_tunnel()),
            None => (
                self.bind(Target::Workload, &pod.meta.labels, namespace),
                None,
            ),
        };
        let condition = binding.condition.clone().filter(|c| !c.status);
        let ctx = workloads::PodContext {
            settings: &self.settings,
            network: &self.network,
            namespace: self.namespaces.get(namespace),
            node: self.nodes.get(&pod.node),
            services: self.services_for_pod(pk, pod),
            binding,
            application_tunnel,
            authorization_policies: self.workload_policies(pod),
        };
        let workload = workloads::build_pod_workload(ctx, pod);
        self.set_address(&uid, workload.map(address::Type::Workload));
        self.set_pod_condition(pk, condition);
    }

    /// Pods rarely hold a condition: skip building the object reference when there is nothing to do.
    fn set_pod_condition(&mut self, pk: &Key, condition: Option<Condition>) {
        if condition.is_none() && !self.pods_with_conditions.contains(pk) {
            return;
        }
        let (namespace, name) = split(pk);
        let obj = ObjectRef::new(Kind::Pod, namespace, name);
        if condition.is_some() {
            self.pods_with_conditions.insert(pk.clone());
        } else {
            self.pods_with_conditions.remove(pk);
        }
        self.set_condition(obj, condition);
    }

    fn recompute_slice(&mut self, sk: &Key) {
        let built: Vec<_> = match self.slices.get(sk) {
            Some(slice) => {
                let svc = workloads::slice_service(slice, |name| {
                    self.services.get(&*key(&slice.meta.namespace, name))
                });
                match svc {
                    Some(svc) => {
                        workloads::build_slice_workloads(&self.settings, &self.network, slice, svc)
                    }
                    None => Vec::new(),
                }
            }
            None => Vec::new(),
        };
        let new_names: Vec<Arc<str>> = built.iter().map(|w| Arc::from(w.uid.as_str())).collect();
        let old_names = self.slice_workloads.remove(sk).unwrap_or_default();
        for old in &old_names {
            if !new_names.contains(old) {
                self.set_address(old, None);
            }
        }
        for w in built {
            let uid = w.uid.clone();
            self.set_address(&uid, Some(address::Type::Workload(w)));
        }
        if !new_names.is_empty() {
            self.slice_workloads.insert(sk.clone(), new_names);
        }
    }
}
