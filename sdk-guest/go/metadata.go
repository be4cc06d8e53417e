package bosun

// Verb is a verb a plugin may be granted on a kind.
type Verb uint8

const (
	// Read through the cache; subscribing to a kind grants it.
	Read Verb = iota
	// Apply: server-side apply of a whole object.
	Apply
	// Patch: merge patch or JSON patch.
	Patch
	// Delete an object.
	Delete
	// Evict a pod through the Eviction API.
	Evict
	// Cordon, uncordon, taint and untaint a node.
	Cordon
	// RecordEvent: a Kubernetes Event about an object of this kind.
	RecordEvent
	// PodCommand: a command to a pod's sidecar.
	PodCommand
)

// Subscription says which objects a plugin wants to be called for.
type Subscription struct {
	APIVersion string
	Kind       string
	// Namespace limits to one namespace; empty for all.
	Namespace string
	// LabelSelector in Kubernetes syntax; empty for none.
	LabelSelector string
}

// Permission grants verbs on one kind ("*" for every kind of the api-version).
type Permission struct {
	APIVersion string
	Kind       string
	Verbs      []Verb
}

// Metadata is what a plugin says about itself.
type Metadata struct {
	Name          string
	Version       string
	Desc          string
	Subscriptions []Subscription
	Permissions   []Permission
}

// NewMetadata starts the metadata of plugin name at version.
func NewMetadata(name, version string) Metadata {
	return Metadata{Name: name, Version: version}
}

// Description sets the one-line description.
func (m Metadata) Description(d string) Metadata { m.Desc = d; return m }

// Subscribe adds a subscription to every object of a kind.
func (m Metadata) Subscribe(apiVersion, kind string) Metadata {
	return m.Subscription(Subscription{APIVersion: apiVersion, Kind: kind})
}

// Subscription adds a subscription (with a namespace or a label selector).
func (m Metadata) Subscription(s Subscription) Metadata {
	m.Subscriptions = append(append([]Subscription(nil), m.Subscriptions...), s)
	return m
}

// Permit grants verbs on a kind.
func (m Metadata) Permit(apiVersion, kind string, verbs ...Verb) Metadata {
	p := Permission{APIVersion: apiVersion, Kind: kind, Verbs: verbs}
	m.Permissions = append(append([]Permission(nil), m.Permissions...), p)
	return m
}
