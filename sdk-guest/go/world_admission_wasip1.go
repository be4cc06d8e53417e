//go:build wasip1 && bosun_admission

// The admission world's own glue: the review export; no command pipe.

package bosun

func hostSubmit(c *Command) (uint64, string, bool) {
	return 0, "the admission world has no command pipe", false
}

//go:wasmexport review
func exportReview(p, n uint32) uint32 {
	request := liftString(p, n)
	arenaReset()
	response, err := reviewExport(request)
	out := uint32(arenaAlloc(12, 4))
	if err != nil {
		store8(out, 1)
		ep, en := arenaString(err.Error())
		store32(out+4, ep)
		store32(out+8, en)
		return out
	}
	store8(out, 0)
	rp, rn := arenaString(response)
	store32(out+4, rp)
	store32(out+8, rn)
	return out
}
