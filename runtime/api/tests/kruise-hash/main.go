// Command kruise-hash prints OpenKruise's SidecarSet hashes for the cases in cases.json,
// the reference the Rust test (runtime/api/tests/kruise_hash.rs) compares against.
//
// It uses the standard library only: the structs below copy the field order and json
// tags of k8s.io/api/core/v1 v0.32.9 (Container and what it nests) and of OpenKruise's
// apps/v1alpha1 SidecarContainer; encodeSidecarSet, SidecarSetHash and
// SidecarSetHashWithoutImage copy pkg/control/sidecarcontrol/hash.go, and
// SafeEncodeString copies k8s.io/apimachinery/pkg/util/rand. IntOrString copies
// k8s.io/apimachinery/pkg/util/intstr. Quantity is the one simplification: it keeps the
// string as written (so cases.json writes quantities in canonical form) and, like
// resource.Quantity, marshals its zero value as "0".
//
// Rerun: cd runtime/api/tests/kruise-hash && GOTOOLCHAIN=local GOPROXY=off go run . > expected.json
package main

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"os"
)

// ---- k8s.io/apimachinery/pkg/util/intstr ----

type Type int64

const (
	Int Type = iota
	String
)

type IntOrString struct {
	Type   Type
	IntVal int32
	StrVal string
}

func (intstr *IntOrString) UnmarshalJSON(value []byte) error {
	if value[0] == '"' {
		intstr.Type = String
		return json.Unmarshal(value, &intstr.StrVal)
	}
	intstr.Type = Int
	return json.Unmarshal(value, &intstr.IntVal)
}

func (intstr IntOrString) MarshalJSON() ([]byte, error) {
	switch intstr.Type {
	case Int:
		return json.Marshal(intstr.IntVal)
	case String:
		return json.Marshal(intstr.StrVal)
	default:
		return []byte{}, fmt.Errorf("impossible IntOrString.Type")
	}
}

// ---- k8s.io/apimachinery/pkg/api/resource (simplified: canonical input only) ----

type Quantity struct{ s string }

func (q *Quantity) UnmarshalJSON(value []byte) error {
	if string(value) == "null" {
		q.s = ""
		return nil
	}
	return json.Unmarshal(value, &q.s)
}

func (q Quantity) MarshalJSON() ([]byte, error) {
	if q.s == "" {
		return []byte(`"0"`), nil
	}
	return json.Marshal(q.s)
}

// ---- k8s.io/api/core/v1 v0.32.9 ----

type ResourceName string
type ResourceList map[ResourceName]Quantity

type Container struct {
	Name                     string                  `json:"name"`
	Image                    string                  `json:"image,omitempty"`
	Command                  []string                `json:"command,omitempty"`
	Args                     []string                `json:"args,omitempty"`
	WorkingDir               string                  `json:"workingDir,omitempty"`
	Ports                    []ContainerPort         `json:"ports,omitempty"`
	EnvFrom                  []EnvFromSource         `json:"envFrom,omitempty"`
	Env                      []EnvVar                `json:"env,omitempty"`
	Resources                ResourceRequirements    `json:"resources,omitempty"`
	ResizePolicy             []ContainerResizePolicy `json:"resizePolicy,omitempty"`
	RestartPolicy            *string                 `json:"restartPolicy,omitempty"`
	VolumeMounts             []VolumeMount           `json:"volumeMounts,omitempty"`
	VolumeDevices            []VolumeDevice          `json:"volumeDevices,omitempty"`
	LivenessProbe            *Probe                  `json:"livenessProbe,omitempty"`
	ReadinessProbe           *Probe                  `json:"readinessProbe,omitempty"`
	StartupProbe             *Probe                  `json:"startupProbe,omitempty"`
	Lifecycle                *Lifecycle              `json:"lifecycle,omitempty"`
	TerminationMessagePath   string                  `json:"terminationMessagePath,omitempty"`
	TerminationMessagePolicy string                  `json:"terminationMessagePolicy,omitempty"`
	ImagePullPolicy          string                  `json:"imagePullPolicy,omitempty"`
	SecurityContext          *SecurityContext        `json:"securityContext,omitempty"`
	Stdin                    bool                    `json:"stdin,omitempty"`
	StdinOnce                bool                    `json:"stdinOnce,omitempty"`
	TTY                      bool                    `json:"tty,omitempty"`
}

type ContainerPort struct {
	Name          string `json:"name,omitempty"`
	HostPort      int32  `json:"hostPort,omitempty"`
	ContainerPort int32  `json:"containerPort"`
	Protocol      string `json:"protocol,omitempty"`
	HostIP        string `json:"hostIP,omitempty"`
}

type EnvFromSource struct {
	Prefix       string              `json:"prefix,omitempty"`
	ConfigMapRef *ConfigMapEnvSource `json:"configMapRef,omitempty"`
	SecretRef    *SecretEnvSource    `json:"secretRef,omitempty"`
}

type ConfigMapEnvSource struct {
	LocalObjectReference `json:",inline"`
	Optional             *bool `json:"optional,omitempty"`
}

type SecretEnvSource struct {
	LocalObjectReference `json:",inline"`
	Optional             *bool `json:"optional,omitempty"`
}

type LocalObjectReference struct {
	Name string `json:"name,omitempty"`
}

type EnvVar struct {
	Name      string        `json:"name"`
	Value     string        `json:"value,omitempty"`
	ValueFrom *EnvVarSource `json:"valueFrom,omitempty"`
}

type EnvVarSource struct {
	FieldRef         *ObjectFieldSelector   `json:"fieldRef,omitempty"`
	ResourceFieldRef *ResourceFieldSelector `json:"resourceFieldRef,omitempty"`
	ConfigMapKeyRef  *ConfigMapKeySelector  `json:"configMapKeyRef,omitempty"`
	SecretKeyRef     *SecretKeySelector     `json:"secretKeyRef,omitempty"`
}

type ObjectFieldSelector struct {
	APIVersion string `json:"apiVersion,omitempty"`
	FieldPath  string `json:"fieldPath"`
}

type ResourceFieldSelector struct {
	ContainerName string   `json:"containerName,omitempty"`
	Resource      string   `json:"resource"`
	Divisor       Quantity `json:"divisor,omitempty"`
}

type ConfigMapKeySelector struct {
	LocalObjectReference `json:",inline"`
	Key                  string `json:"key"`
	Optional             *bool  `json:"optional,omitempty"`
}

type SecretKeySelector struct {
	LocalObjectReference `json:",inline"`
	Key                  string `json:"key"`
	Optional             *bool  `json:"optional,omitempty"`
}

type ResourceRequirements struct {
	Limits   ResourceList    `json:"limits,omitempty"`
	Requests ResourceList    `json:"requests,omitempty"`
	Claims   []ResourceClaim `json:"claims,omitempty"`
}

type ResourceClaim struct {
	Name    string `json:"name"`
	Request string `json:"request,omitempty"`
}

type ContainerResizePolicy struct {
	ResourceName  string `json:"resourceName"`
	RestartPolicy string `json:"restartPolicy"`
}

type VolumeMount struct {
	Name              string  `json:"name"`
	ReadOnly          bool    `json:"readOnly,omitempty"`
	RecursiveReadOnly *string `json:"recursiveReadOnly,omitempty"`
	MountPath         string  `json:"mountPath"`
	SubPath           string  `json:"subPath,omitempty"`
	MountPropagation  *string `json:"mountPropagation,omitempty"`
	SubPathExpr       string  `json:"subPathExpr,omitempty"`
}

type VolumeDevice struct {
	Name       string `json:"name"`
	DevicePath string `json:"devicePath"`
}

type Probe struct {
	ProbeHandler                  `json:",inline"`
	InitialDelaySeconds           int32  `json:"initialDelaySeconds,omitempty"`
	TimeoutSeconds                int32  `json:"timeoutSeconds,omitempty"`
	PeriodSeconds                 int32  `json:"periodSeconds,omitempty"`
	SuccessThreshold              int32  `json:"successThreshold,omitempty"`
	FailureThreshold              int32  `json:"failureThreshold,omitempty"`
	TerminationGracePeriodSeconds *int64 `json:"terminationGracePeriodSeconds,omitempty"`
}

type ProbeHandler struct {
	Exec      *ExecAction      `json:"exec,omitempty"`
	HTTPGet   *HTTPGetAction   `json:"httpGet,omitempty"`
	TCPSocket *TCPSocketAction `json:"tcpSocket,omitempty"`
	GRPC      *GRPCAction      `json:"grpc,omitempty"`
}

type ExecAction struct {
	Command []string `json:"command,omitempty"`
}

type HTTPGetAction struct {
	Path        string       `json:"path,omitempty"`
	Port        IntOrString  `json:"port"`
	Host        string       `json:"host,omitempty"`
	Scheme      string       `json:"scheme,omitempty"`
	HTTPHeaders []HTTPHeader `json:"httpHeaders,omitempty"`
}

type HTTPHeader struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

type TCPSocketAction struct {
	Port IntOrString `json:"port"`
	Host string      `json:"host,omitempty"`
}

type GRPCAction struct {
	Port    int32   `json:"port"`
	Service *string `json:"service"`
}

type Lifecycle struct {
	PostStart *LifecycleHandler `json:"postStart,omitempty"`
	PreStop   *LifecycleHandler `json:"preStop,omitempty"`
}

type LifecycleHandler struct {
	Exec      *ExecAction      `json:"exec,omitempty"`
	HTTPGet   *HTTPGetAction   `json:"httpGet,omitempty"`
	TCPSocket *TCPSocketAction `json:"tcpSocket,omitempty"`
	Sleep     *SleepAction     `json:"sleep,omitempty"`
}

type SleepAction struct {
	Seconds int64 `json:"seconds"`
}

type SecurityContext struct {
	Capabilities             *Capabilities                  `json:"capabilities,omitempty"`
	Privileged               *bool                          `json:"privileged,omitempty"`
	SELinuxOptions           *SELinuxOptions                `json:"seLinuxOptions,omitempty"`
	WindowsOptions           *WindowsSecurityContextOptions `json:"windowsOptions,omitempty"`
	RunAsUser                *int64                         `json:"runAsUser,omitempty"`
	RunAsGroup               *int64                         `json:"runAsGroup,omitempty"`
	RunAsNonRoot             *bool                          `json:"runAsNonRoot,omitempty"`
	ReadOnlyRootFilesystem   *bool                          `json:"readOnlyRootFilesystem,omitempty"`
	AllowPrivilegeEscalation *bool                          `json:"allowPrivilegeEscalation,omitempty"`
	ProcMount                *string                        `json:"procMount,omitempty"`
	SeccompProfile           *SeccompProfile                `json:"seccompProfile,omitempty"`
	AppArmorProfile          *AppArmorProfile               `json:"appArmorProfile,omitempty"`
}

type Capabilities struct {
	Add  []string `json:"add,omitempty"`
	Drop []string `json:"drop,omitempty"`
}

type SELinuxOptions struct {
	User  string `json:"user,omitempty"`
	Role  string `json:"role,omitempty"`
	Type  string `json:"type,omitempty"`
	Level string `json:"level,omitempty"`
}

type WindowsSecurityContextOptions struct {
	GMSACredentialSpecName *string `json:"gmsaCredentialSpecName,omitempty"`
	GMSACredentialSpec     *string `json:"gmsaCredentialSpec,omitempty"`
	RunAsUserName          *string `json:"runAsUserName,omitempty"`
	HostProcess            *bool   `json:"hostProcess,omitempty"`
}

type SeccompProfile struct {
	Type             string  `json:"type"`
	LocalhostProfile *string `json:"localhostProfile,omitempty"`
}

type AppArmorProfile struct {
	Type             string  `json:"type"`
	LocalhostProfile *string `json:"localhostProfile,omitempty"`
}

// ---- github.com/openkruise/kruise/apis/apps/v1alpha1 ----

type SidecarContainer struct {
	Container `json:",inline"`

	PodInjectPolicy         string                          `json:"podInjectPolicy,omitempty"`
	UpgradeStrategy         SidecarContainerUpgradeStrategy `json:"upgradeStrategy,omitempty"`
	ShareVolumePolicy       ShareVolumePolicy               `json:"shareVolumePolicy,omitempty"`
	ShareVolumeDevicePolicy *ShareVolumePolicy              `json:"shareVolumeDevicePolicy,omitempty"`
	TransferEnv             []TransferEnvVar                `json:"transferEnv,omitempty"`
	ResourcesPolicy         *ResourcesPolicy                `json:"resourcesPolicy,omitempty"`
}

type ShareVolumePolicy struct {
	Type string `json:"type,omitempty"`
}

type TransferEnvVar struct {
	SourceContainerName     string                     `json:"sourceContainerName,omitempty"`
	SourceContainerNameFrom *SourceContainerNameSource `json:"sourceContainerNameFrom,omitempty"`
	EnvName                 string                     `json:"envName,omitempty"`
	EnvNames                []string                   `json:"envNames,omitempty"`
}

type SourceContainerNameSource struct {
	FieldRef *ObjectFieldSelector `json:"fieldRef,omitempty"`
}

type SidecarContainerUpgradeStrategy struct {
	UpgradeType          string `json:"upgradeType,omitempty"`
	HotUpgradeEmptyImage string `json:"hotUpgradeEmptyImage,omitempty"`
}

type ResourcesPolicy struct {
	TargetContainersMode      string        `json:"targetContainersMode"`
	TargetContainersNameRegex string        `json:"targetContainersNameRegex,omitempty"`
	ResourcesExpr             ResourcesExpr `json:"resourcesExpr"`
}

type ResourcesExpr struct {
	Limits   *ResourceExprLimits   `json:"limits,omitempty"`
	Requests *ResourceExprRequests `json:"requests,omitempty"`
}

type ResourceExprLimits struct {
	CPU    string `json:"cpu,omitempty"`
	Memory string `json:"memory,omitempty"`
}

type ResourceExprRequests struct {
	CPU    string `json:"cpu,omitempty"`
	Memory string `json:"memory,omitempty"`
}

type SidecarSetSpec struct {
	InitContainers []SidecarContainer `json:"initContainers,omitempty"`
	Containers     []SidecarContainer `json:"containers,omitempty"`
}

// ---- github.com/openkruise/kruise/pkg/control/sidecarcontrol/hash.go ----

func SidecarSetHash(spec *SidecarSetSpec) (string, error) {
	encoded, err := encodeSidecarSet(spec)
	if err != nil {
		return "", err
	}
	return SafeEncodeString(hash(encoded)), nil
}

func SidecarSetHashWithoutImage(spec *SidecarSetSpec) (string, error) {
	// As the generated DeepCopy does: a nil slice stays nil, an empty one stays empty.
	ss := *spec
	if spec.Containers != nil {
		ss.Containers = make([]SidecarContainer, len(spec.Containers))
		copy(ss.Containers, spec.Containers)
	}
	if spec.InitContainers != nil {
		ss.InitContainers = make([]SidecarContainer, len(spec.InitContainers))
		copy(ss.InitContainers, spec.InitContainers)
	}
	for i := range ss.Containers {
		ss.Containers[i].Image = ""
	}
	for i := range ss.InitContainers {
		ss.InitContainers[i].Image = ""
	}
	encoded, err := encodeSidecarSet(&ss)
	if err != nil {
		return "", err
	}
	return SafeEncodeString(hash(encoded)), nil
}

func isSidecarContainer(c Container) bool {
	return c.RestartPolicy != nil && *c.RestartPolicy == "Always"
}

func encodeSidecarSet(spec *SidecarSetSpec) (string, error) {
	m := map[string]interface{}{"containers": spec.Containers}
	initContainer := make([]SidecarContainer, 0)
	for i := range spec.InitContainers {
		if isSidecarContainer(spec.InitContainers[i].Container) {
			initContainer = append(initContainer, spec.InitContainers[i])
		}
	}
	if len(initContainer) > 0 {
		m["initContainers"] = spec.InitContainers
	}
	data, err := json.Marshal(m)
	if err != nil {
		return "", err
	}
	return string(data), nil
}

func hash(data string) string {
	return fmt.Sprintf("%x", sha256.Sum256([]byte(data)))
}

// ---- k8s.io/apimachinery/pkg/util/rand ----

const alphanums = "bcdfghjklmnpqrstvwxz2456789"

func SafeEncodeString(s string) string {
	r := make([]byte, len(s))
	for i, b := range []rune(s) {
		r[i] = alphanums[(int(b) % len(alphanums))]
	}
	return string(r)
}

// ---- the cases ----

type Case struct {
	Name string          `json:"name"`
	Spec json.RawMessage `json:"spec"`
}

type Result struct {
	Name             string `json:"name"`
	Encoded          string `json:"encoded"`
	Hash             string `json:"hash"`
	HashWithoutImage string `json:"hashWithoutImage"`
}

func main() {
	raw, err := os.ReadFile("cases.json")
	if err != nil {
		fmt.Fprintln(os.Stderr, "read cases.json:", err)
		os.Exit(1)
	}
	var cases []Case
	if err := json.Unmarshal(raw, &cases); err != nil {
		fmt.Fprintln(os.Stderr, "parse cases.json:", err)
		os.Exit(1)
	}
	results := make([]Result, 0, len(cases))
	for _, c := range cases {
		var spec SidecarSetSpec
		if err := json.Unmarshal(c.Spec, &spec); err != nil {
			fmt.Fprintf(os.Stderr, "case %s: %v\n", c.Name, err)
			os.Exit(1)
		}
		encoded, err := encodeSidecarSet(&spec)
		if err != nil {
			fmt.Fprintf(os.Stderr, "case %s: %v\n", c.Name, err)
			os.Exit(1)
		}
		h, _ := SidecarSetHash(&spec)
		w, _ := SidecarSetHashWithoutImage(&spec)
		results = append(results, Result{Name: c.Name, Encoded: encoded, Hash: h, HashWithoutImage: w})
	}
	out, _ := json.MarshalIndent(results, "", "  ")
	fmt.Println(string(out))
}
