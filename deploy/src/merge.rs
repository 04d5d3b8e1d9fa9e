//! Merging a worker group's `pod_template` fragment into the pod spec
//! rendered for it: the escape hatch for settings the spec has no key for.

use serde_json::Value;

/// Merges `fragment` into `base`: objects key by key, lists whose items
/// are all objects with a `name` item by item on that name (so that a
/// container, volume or variable is amended, not replaced, and new ones
/// are appended), anything else replaced by the fragment's value.
pub fn deep_merge(base: &mut Value, fragment: Value) {
    match (base, fragment) {
        (Value::Object(base), Value::Object(fragment)) => {
            for (key, value) in fragment {
                match base.get_mut(&key) {
                    Some(existing) => deep_merge(existing, value),
                    None => {
                        base.insert(key, value);
                    }
                }
            }
        }
        (Value::Array(base), Value::Array(fragment)) if named(base) && named(&fragment) => {
            for item in fragment {
                let name = item.get("name").cloned();
                match base.iter_mut().find(|existing| existing.get("name") == name.as_ref()) {
                    Some(existing) => deep_merge(existing, item),
                    None => base.push(item),
                }
            }
        }
        (base, fragment) => *base = fragment,
    }
}

fn named(items: &[Value]) -> bool {
    items.iter().all(|item| item.get("name").is_some_and(Value::is_string))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn objects_merge_named_lists_merge_by_name_the_rest_replaces() {
        let mut pod = json!({
            "containers": [{"name": "leman", "image": "a", "env": [{"name": "X", "value": "1"}]}],
            "nodeSelector": {"pool": "cpu"},
            "tolerations": [{"key": "a"}],
        });
        deep_merge(
            &mut pod,
            json!({
                "containers": [
                    {"name": "leman", "env": [{"name": "Y", "value": "2"}]},
                    {"name": "sidecar", "image": "b"}
                ],
                "nodeSelector": {"zone": "z1"},
                "tolerations": [{"key": "b"}],
                "hostIPC": true,
            }),
        );
        assert_eq!(
            pod,
            json!({
                "containers": [
                    {"name": "leman", "image": "a", "env": [{"name": "X", "value": "1"}, {"name": "Y", "value": "2"}]},
                    {"name": "sidecar", "image": "b"}
                ],
                "nodeSelector": {"pool": "cpu", "zone": "z1"},
                "tolerations": [{"key": "b"}],
                "hostIPC": true,
            })
        );
    }
}
