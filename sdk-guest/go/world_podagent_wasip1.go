//go:build wasip1 && bosun_podagent

// The pod-agent world's own glue: the pod imports and the on-start, probe, on-command
// and on-stop exports; no command pipe, no cache.

package bosun

//go:wasmimport bosun:operator/pod@0.1.0 info
func importPodInfo(ret uint32)

//go:wasmimport bosun:operator/pod@0.1.0 http-get
func importHTTPGet(port, pathP, pathN, timeout, ret uint32)

//go:wasmimport bosun:operator/pod@0.1.0 http-post
func importHTTPPost(port, pathP, pathN, ctP, ctN, bodyP, bodyN, timeout, ret uint32)

//go:wasmimport bosun:operator/pod@0.1.0 read-file
func importReadFile(pathP, pathN, ret uint32)

//go:wasmimport bosun:operator/pod@0.1.0 write-file
func importWriteFile(pathP, pathN, bodyP, bodyN, ret uint32)

func hostSubmit(c *Command) (uint64, string, bool) {
	return 0, "the pod-agent world has no command pipe", false
}

func hostPodInfo() (PodInfo, string) {
	r := ret()
	importPodInfo(r)
	s := func(at uint32) string { return liftString(load32(r+at), load32(r+at+4)) }
	return PodInfo{Namespace: s(0), Name: s(8), UID: s(16), NodeName: s(24)}, s(32)
}

// liftHTTPResult reads a result<http-response, string> at r: the discriminant at 0,
// then the response (status u16 at 4, headers list at 8, body list at 16) or the error.
func liftHTTPResult(r uint32) (HTTPResponse, string) {
	if load8(r) != 0 {
		return HTTPResponse{}, errText(liftString(load32(r+4), load32(r+8)))
	}
	resp := HTTPResponse{Status: load16(r + 4)}
	hp, hn := load32(r+8), load32(r+12)
	resp.Headers = make([][2]string, hn)
	for i := uint32(0); i < hn; i++ {
		e := hp + i*16
		resp.Headers[i] = [2]string{liftString(load32(e), load32(e+4)), liftString(load32(e+8), load32(e+12))}
	}
	resp.Body = liftBytes(load32(r+16), load32(r+20))
	return resp, ""
}

// errText keeps an empty error message visible.
func errText(s string) string {
	if s == "" {
		return "failed"
	}
	return s
}

func hostHTTPGet(port uint16, path string, timeout uint32) (HTTPResponse, string) {
	pP, pN := strArg(path)
	r := ret()
	importHTTPGet(uint32(port), pP, pN, timeout, r)
	keepAlive(&path)
	return liftHTTPResult(r)
}

func hostHTTPPost(port uint16, path, contentType string, body []byte, timeout uint32) (HTTPResponse, string) {
	pP, pN := strArg(path)
	cP, cN := strArg(contentType)
	bP, bN := bytesArg(body)
	r := ret()
	importHTTPPost(uint32(port), pP, pN, cP, cN, bP, bN, timeout, r)
	keepAlive(&path, &contentType, &body)
	return liftHTTPResult(r)
}

func hostReadFile(path string) ([]byte, string) {
	pP, pN := strArg(path)
	r := ret()
	importReadFile(pP, pN, r)
	keepAlive(&path)
	if load8(r) != 0 {
		return nil, errText(liftString(load32(r+4), load32(r+8)))
	}
	return liftBytes(load32(r+4), load32(r+8)), ""
}

func hostWriteFile(path string, contents []byte) string {
	pP, pN := strArg(path)
	cP, cN := bytesArg(contents)
	r := ret()
	importWriteFile(pP, pN, cP, cN, r)
	keepAlive(&path, &contents)
	if load8(r) != 0 {
		return errText(liftString(load32(r+4), load32(r+8)))
	}
	return ""
}

// unitResult writes a result<_, string> into the arena.
func unitResult(err error) uint32 {
	out := uint32(arenaAlloc(12, 4))
	if err == nil {
		store8(out, 0)
		return out
	}
	store8(out, 1)
	ep, en := arenaString(err.Error())
	store32(out+4, ep)
	store32(out+8, en)
	return out
}

//go:wasmexport on-start
func exportOnStart() uint32 {
	arenaReset()
	return unitResult(onStartExport())
}

//go:wasmexport on-stop
func exportOnStop() uint32 {
	arenaReset()
	return unitResult(onStopExport())
}

//go:wasmexport probe
func exportProbe(kind uint32) uint32 {
	arenaReset()
	result := probeExport(ProbeKind(kind))
	out := uint32(arenaAlloc(12, 4))
	if result.Healthy {
		store8(out, 1)
	} else {
		store8(out, 0)
	}
	mp, mn := arenaString(result.Message)
	store32(out+4, mp)
	store32(out+8, mn)
	return out
}

//go:wasmexport on-command
func exportOnCommand(p, n uint32) uint32 {
	payload := liftString(p, n)
	arenaReset()
	reply, err := onCommandExport(payload)
	out := uint32(arenaAlloc(12, 4))
	if err != nil {
		store8(out, 1)
		ep, en := arenaString(err.Error())
		store32(out+4, ep)
		store32(out+8, en)
		return out
	}
	store8(out, 0)
	rp, rn := arenaString(reply)
	store32(out+4, rp)
	store32(out+8, rn)
	return out
}
