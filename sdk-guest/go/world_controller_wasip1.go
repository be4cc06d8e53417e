//go:build wasip1 && !bosun_admission && !bosun_podagent

// The controller world's own glue: the command pipe and the reconcile export. Built
// unless the tag bosun_admission or bosun_podagent is set (`bosun plugin build` sets it
// for a plugin that calls ExportAdmission or ExportPodAgent): a component implements one world, and Go links every
// //go:wasmexport of a package it builds.

package bosun

//go:wasmimport bosun:operator/commands@0.1.0 submit
func importSubmit(a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, a12, a13, a14, ret uint32)

func hostSubmit(c *Command) (uint64, string, bool) {
	var f [15]uint32
	f[0] = uint32(c.kind)
	a := f[1:]
	switch c.kind {
	case cmdApply, cmdCordon, cmdUncordon:
		a[0], a[1] = strArg(c.text)
	case cmdMergePatch, cmdJSONPatch:
		r := flattenRef(&c.target)
		copy(a, r[:])
		a[9], a[10] = strArg(c.text)
	case cmdDelete, cmdEvict:
		r := flattenRef(&c.target)
		copy(a, r[:])
	case cmdTaint:
		a[0], a[1] = strArg(c.text)
		a[2], a[3] = strArg(c.text2)
		a[4], a[5], a[6] = optStrArg(c.text3)
		a[7] = uint32(c.effect)
	case cmdUntaint:
		a[0], a[1] = strArg(c.text)
		a[2], a[3] = strArg(c.text2)
		if c.hasEffect {
			a[4], a[5] = 1, uint32(c.effect)
		}
	case cmdRecordEvent:
		r := flattenRef(&c.target)
		copy(a, r[:])
		a[9] = uint32(c.eventType)
		a[10], a[11] = strArg(c.text)
		a[12], a[13] = strArg(c.text2)
	case cmdPodCommand:
		for i, s := range c.pod {
			a[2*i], a[2*i+1] = strArg(s)
		}
	}
	r := ret()
	importSubmit(f[0], f[1], f[2], f[3], f[4], f[5], f[6], f[7], f[8], f[9], f[10], f[11], f[12], f[13], f[14], r)
	keepAlive(c)
	if load8(r) == 0 {
		return load64(r + 8), "", true
	}
	return 0, liftString(load32(r+8), load32(r+12)), false
}

//go:wasmexport reconcile
func exportReconcile(avP, avN, kP, kN, nsD, nsP, nsN, nP, nN, evP, evN, ocP, ocN, attempt uint32) uint32 {
	req := Request{Attempt: attempt}
	req.Target.APIVersion = liftString(avP, avN)
	req.Target.Kind = liftString(kP, kN)
	if nsD != 0 {
		req.Target.Namespace = liftString(nsP, nsN)
	}
	req.Target.Name = liftString(nP, nN)
	req.Events = make([]EventKind, evN)
	for i := uint32(0); i < evN; i++ {
		req.Events[i] = EventKind(load8(evP + i))
	}
	req.Outcomes = make([]CommandOutcome, ocN)
	for i := uint32(0); i < ocN; i++ {
		e := ocP + i*24
		req.Outcomes[i] = CommandOutcome{
			ID:      load64(e),
			Verdict: Verdict(load8(e + 8)),
			Message: liftString(load32(e+12), load32(e+16)),
		}
	}
	arenaReset()
	outcome, err := reconcileExport(&req)
	out := uint32(arenaAlloc(24, 8))
	if err != nil {
		store8(out, 1)
		ep, en := arenaString(err.Error())
		store32(out+8, ep)
		store32(out+12, en)
		return out
	}
	store8(out, 0)
	if ms, ok := outcome.RequeueAfterMs(); ok {
		store8(out+8, 1)
		store64(out+16, ms)
	} else {
		store8(out+8, 0)
	}
	return out
}
