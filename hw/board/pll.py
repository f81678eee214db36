"""PLL settings of the two families: the nearest an input clock can make to a target clock."""

__all__ = ["ice40_pll_parameters", "ecp5_pll_parameters", "pll_parameters"]


def ice40_pll_parameters(input_frequency, output_frequency):
    """SB_PLL40 ``SIMPLE`` feedback settings nearest to ``output_frequency`` (as icepll).

    Returns ``(parameters, achieved_frequency)``.
    """
    best = None
    for divr in range(16):
        pfd = input_frequency / (divr + 1)
        if not 10e6 <= pfd <= 133e6:
            continue
        for divf in range(128):
            vco = pfd * (divf + 1)
            if not 533e6 <= vco <= 1066e6:
                continue
            for divq in range(1, 7):
                out = vco / 2 ** divq
                error = abs(out - output_frequency)
                if best is None or error < best[0]:
                    best = (error, divr, divf, divq, pfd, out)
    if best is None:
        raise ValueError(f"no iCE40 PLL setting for {input_frequency} Hz in")
    _, divr, divf, divq, pfd, out = best
    bounds = (17e6, 26e6, 44e6, 66e6, 101e6)
    filter_range = 1 + sum(pfd >= b for b in bounds)
    return {"DIVR": divr, "DIVF": divf, "DIVQ": divq, "FILTER_RANGE": filter_range}, out


def ecp5_pll_parameters(input_frequency, output_frequency):
    """EHXPLLL settings (CLKOP feedback) nearest to ``output_frequency`` (as ecppll).

    Returns ``(parameters, achieved_frequency)``.
    """
    best = None
    for input_div in range(1, 129):
        pfd = input_frequency / input_div
        if not 3.125e6 <= pfd <= 400e6:
            continue
        for feedback_div in range(1, 81):
            out = pfd * feedback_div
            for output_div in range(1, 129):
                vco = out * output_div
                if not 400e6 <= vco <= 800e6:
                    continue
                key = (abs(out - output_frequency), abs(vco - 600e6))
                if best is None or key < best[0]:
                    best = (key, input_div, feedback_div, output_div, out)
    if best is None:
        raise ValueError(f"no ECP5 PLL setting for {input_frequency} Hz in")
    _, input_div, feedback_div, output_div, out = best
    return {"CLKI_DIV": input_div, "CLKFB_DIV": feedback_div, "CLKOP_DIV": output_div,
            "CLKOP_CPHASE": (output_div - 1) // 2, "CLKOP_FPHASE": 0}, out


def pll_parameters(family, input_frequency, output_frequency):
    """``(parameters, achieved_frequency)`` of ``family``'s PLL ("ice40" or "ecp5")."""
    pll = {"ice40": ice40_pll_parameters, "ecp5": ecp5_pll_parameters}[family]
    return pll(input_frequency, output_frequency)
