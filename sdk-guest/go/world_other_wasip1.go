//go:build wasip1 && !bosun_podagent

// Outside the pod-agent world there is no pod: these keep Pod's methods linkable (a
// controller or admission plugin never reaches them).

package bosun

const noPod = "the pod interface is only available to a pod-agent plugin"

func hostPodInfo() (PodInfo, string) { return PodInfo{}, "{}" }

func hostHTTPGet(uint16, string, uint32) (HTTPResponse, string) { return HTTPResponse{}, noPod }

func hostHTTPPost(uint16, string, string, []byte, uint32) (HTTPResponse, string) {
	return HTTPResponse{}, noPod
}

func hostReadFile(string) ([]byte, string) { return nil, noPod }

func hostWriteFile(string, []byte) string { return noPod }
