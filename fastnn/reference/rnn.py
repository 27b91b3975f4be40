"""Naive NumPy recurrent cells, step by step: the oracle for fastnn.kernels.rnn (computes in x's
dtype). The textbook shape (forward keeps a per-step cache, backward walks it in reverse), with
Keras 3's gate orders, biases, masks and go_backwards; same signatures as fastnn.kernels.rnn.
"""
from __future__ import annotations

import numpy as np

from fastnn.reference import activation as _activation

_GATES = {"simple_rnn": 1, "lstm": 4, "gru": 3}


def _f(name, z):
    return _activation.apply(name, z)


def _df(name, z, y, dy):
    return _activation.grad(name, z, y, dy)


def forward(cell, x, kernel, recurrent_kernel, bias=None, *, h0=None, c0=None, mask=None,
            activation="tanh", recurrent_activation="sigmoid", go_backwards=False,
            zero_output_for_mask=False, reset_after=True, input_mask=None, recurrent_mask=None,
            training=False, out=None, alloc=None):
    x = np.asarray(x)
    n, t, d = x.shape
    G = _GATES[cell]
    W, Uk = np.asarray(kernel), np.asarray(recurrent_kernel)
    U = W.shape[1] // G
    dt = x.dtype
    after = cell == "gru" and reset_after
    if bias is None:
        b_in = np.zeros(G * U, dt)
        b_rec = np.zeros(G * U, dt)
    elif after:
        b_in, b_rec = np.asarray(bias)[0], np.asarray(bias)[1]
    else:
        b_in, b_rec = np.asarray(bias), np.zeros(G * U, dt)
    xm = [np.ones((n, d), dt)] * G
    if input_mask is not None:
        im = np.asarray(input_mask)
        xm = [im] * G if im.ndim == 2 else [im[min(g, im.shape[0] - 1)] for g in range(G)]
    hm = [np.ones((n, U), dt)] * G
    if recurrent_mask is not None:
        rm = np.asarray(recurrent_mask)
        hm = [rm] * G if rm.ndim == 2 else [rm[:, g] for g in range(G)]
    h = np.zeros((n, U), dt) if h0 is None else np.array(h0, dt)
    c = np.zeros((n, U), dt) if c0 is None else np.array(c0, dt)
    prev_out = np.zeros((n, U), dt)
    ys, steps = [], []
    order = range(t - 1, -1, -1) if go_backwards else range(t)
    sl = [slice(g * U, (g + 1) * U) for g in range(G)]
    for s, ti in enumerate(order):
        xt = x[:, ti]
        xw = [(xt * xm[g]) @ W[:, sl[g]] + b_in[sl[g]] for g in range(G)]
        rec = [(h * hm[g]) @ Uk[:, sl[g]] for g in range(G)]
        st = {"t": ti, "h": h, "c": c, "xw": xw}
        if cell == "simple_rnn":
            z = xw[0] + rec[0]
            hn = _f(activation, z)
            cn = c
            st.update(z=z, hn=hn)
        elif cell == "lstm":
            zs = [xw[g] + rec[g] for g in range(4)]
            i = _f(recurrent_activation, zs[0])
            f = _f(recurrent_activation, zs[1])
            gg = _f(activation, zs[2])
            o = _f(recurrent_activation, zs[3])
            cn = f * c + i * gg
            hc = _f(activation, cn)
            hn = o * hc
            st.update(zs=zs, i=i, f=f, g=gg, o=o, cn=cn, hc=hc)
        else:
            zp = xw[0] + rec[0] + b_rec[sl[0]]
            rp = xw[1] + rec[1] + b_rec[sl[1]]
            zg = _f(recurrent_activation, zp)
            r = _f(recurrent_activation, rp)
            if after:
                rh = rec[2] + b_rec[sl[2]]
                hp_ = xw[2] + r * rh
            else:
                rh = r * h * hm[2]
                hp_ = xw[2] + rh @ Uk[:, sl[2]]
            hh = _f(activation, hp_)
            hn = zg * h + (1 - zg) * hh
            cn = c
            st.update(zp=zp, rp=rp, zg=zg, r=r, rh=rh, hp=hp_, hh=hh)
        valid = np.ones(n, bool) if mask is None else np.asarray(mask)[:, ti].astype(bool)
        v = valid[:, None]
        h = np.where(v, hn, h)
        if cell == "lstm":
            c = np.where(v, cn, c)
        o_ = np.where(v, hn, 0 if zero_output_for_mask else prev_out)
        prev_out = o_
        ys.append(o_)
        st["valid"] = valid
        steps.append(st)
    y = np.stack(ys, axis=1)
    cache = None
    if training:
        cache = dict(cell=cell, x=x, W=W, Uk=Uk, U=U, G=G, after=after, steps=steps, xm=xm, hm=hm,
                     act=activation, rec=recurrent_activation, zero=zero_output_for_mask,
                     has_bias=bias is not None)
    return y, h, (c if cell == "lstm" else None), cache


def backward(cache, dy=None, dy_last=None, dh=None, dc=None, *, need_dx=True, dx=None,
             dkernel=None, drecurrent=None, dbias=None):
    cell, x, W, Uk, U, G = (cache[k] for k in ("cell", "x", "W", "Uk", "U", "G"))
    after, steps, xm, hm = cache["after"], cache["steps"], cache["xm"], cache["hm"]
    act, ract = cache["act"], cache["rec"]
    n, t, d = x.shape
    dt = x.dtype
    sl = [slice(g * U, (g + 1) * U) for g in range(G)]
    dW = np.zeros_like(W)
    dUk = np.zeros_like(Uk)
    db_in = np.zeros(G * U, dt)
    db_rec = np.zeros(G * U, dt)
    dxs = np.zeros_like(x)
    dhs = np.zeros((n, U), dt) if dh is None else np.array(dh, dt)
    dcs = np.zeros((n, U), dt) if dc is None else np.array(dc, dt)
    docarry = np.zeros((n, U), dt)
    T = len(steps)
    for s in range(T - 1, -1, -1):
        st = steps[s]
        v = st["valid"][:, None]
        go = docarry.copy()
        if dy is not None:
            go += dy[:, s]
        if dy_last is not None and s == T - 1:
            go += dy_last
        docarry = np.zeros_like(go) if cache["zero"] else np.where(v, 0, go)
        gh = np.where(v, go + dhs, 0)              # gradient of the candidate h (valid rows)
        h, c = st["h"], st["c"]
        dxw = [np.zeros((n, U), dt) for _ in range(G)]
        drec = [np.zeros((n, U), dt) for _ in range(G)]
        dh_prev = np.zeros((n, U), dt)
        if cell == "simple_rnn":
            dz = _df(act, st["z"], st["hn"], gh)
            dxw[0] = drec[0] = dz
        elif cell == "lstm":
            gc = np.where(v, dcs, 0)
            do = gh * st["hc"]
            dct = gc + _df(act, st["cn"], st["hc"], gh * st["o"])
            di, df, dg = dct * st["g"], dct * c, dct * st["i"]
            dc_prev = dct * st["f"]
            zs = st["zs"]
            dzs = [_df(ract, zs[0], st["i"], di), _df(ract, zs[1], st["f"], df),
                   _df(act, zs[2], st["g"], dg), _df(ract, zs[3], st["o"], do)]
            dxw = drec = dzs
            dcs = np.where(v, dc_prev, dcs)
        else:
            zg, r, hh = st["zg"], st["r"], st["hh"]
            dzg = gh * (h - hh)
            dhh = gh * (1 - zg)
            dh_prev += gh * zg
            dhp = _df(act, st["hp"], hh, dhh)
            if after:
                dr = dhp * st["rh"]
                drec[2] = dhp * r
                db_rec[sl[2]] += drec[2].sum(0)
            else:
                drh = dhp @ Uk[:, sl[2]].T
                dUk[:, sl[2]] += st["rh"].T @ dhp
                dr = drh * h * hm[2]
                dh_prev += drh * r * hm[2]
            dxw[2] = dhp
            dzp = _df(ract, st["zp"], zg, dzg)
            drp = _df(ract, st["rp"], r, dr)
            dxw[0] = drec[0] = dzp
            dxw[1] = drec[1] = drp
            if after:
                db_rec[sl[0]] += dzp.sum(0)
                db_rec[sl[1]] += drp.sum(0)
        ti = st["t"]
        xt = x[:, ti]
        gates_rec = range(2) if (cell == "gru" and not after) else range(G)
        for g in range(G):
            dW[:, sl[g]] += (xt * xm[g]).T @ dxw[g]
            db_in[sl[g]] += dxw[g].sum(0)
            dxs[:, ti] += (dxw[g] @ W[:, sl[g]].T) * xm[g]
        for g in gates_rec:
            dUk[:, sl[g]] += (h * hm[g]).T @ drec[g]
            dh_prev += (drec[g] @ Uk[:, sl[g]].T) * hm[g]
        dhs = np.where(v, dh_prev, dhs)
    if not cache["has_bias"]:
        db = np.zeros(G * U, dt) if not after else np.zeros((2, G * U), dt)
    else:
        db = np.stack([db_in, db_rec]) if after else db_in
    return (dxs if need_dx else None), dW, dUk, db, dhs, (dcs if cell == "lstm" else None)


def _int_ids(ids):
    """Token ids as integers (integer-valued floats are taken, as the kernel takes them)."""
    ids = np.asarray(ids)
    if ids.dtype.kind == "f" and ids.size and np.all(ids == np.floor(ids)):
        return ids.astype(np.int64)
    return ids


def embedding(ids, table, *, out=None, layer=None):
    ids = _int_ids(ids)
    if ids.size and (ids.min() < 0 or ids.max() >= table.shape[0]):
        raise ValueError(f"embedding: ids must be in [0, {table.shape[0]})")
    return np.asarray(table)[ids]


def embedding_backward(ids, dout, vocab, *, dtable=None):
    ids = _int_ids(ids)
    dout = np.asarray(dout)
    out = np.zeros((vocab, dout.shape[-1]), dout.dtype)
    np.add.at(out, ids.reshape(-1), dout.reshape(ids.size, dout.shape[-1]))
    return out
