package stats

import "github.com/shopspring/decimal"

// MeasureValue is one sample of a plugin measure: the value and, when the
// metric has one, its capacity (pct = value / capacity).
type MeasureValue struct {
	Value    decimal.Decimal
	Capacity *decimal.Decimal
}

// NodeMeasure is what a compute plugin reports for the node: the node
// total and each device's own value (upstream NodeMeasurement).
type NodeMeasure struct {
	Def       Def
	Node      MeasureValue
	PerDevice map[string]MeasureValue
}

// ContainerMeasure is a plugin's value per kernel (upstream
// ContainerMeasurement, keyed by kernel id instead of container id: the
// agent attributes devices through its own allocation record).
type ContainerMeasure struct {
	Def       Def
	PerKernel map[string]MeasureValue
}

// RecordNodeMeasures folds plugin measures into the node snapshot: the
// node value under node[key], the devices under devices[key][id]. A
// measure that stops being reported stays at its last value until the
// plugin reports again; a device that disappears from PerDevice is
// dropped so no stale series lingers.
func (c *Collector) RecordNodeMeasures(ms []NodeMeasure) {
	now := c.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.devs == nil {
		c.devs = map[string]map[string]*Metric{}
	}
	for _, m := range ms {
		key := m.Def.Key
		nm, ok := c.node[key]
		if !ok {
			nm = newMetric(m.Def, nil)
			c.node[key] = nm
		}
		nm.Capacity = m.Node.Capacity
		nm.Stats.Update(m.Node.Value, now)
		per := c.devs[key]
		if per == nil {
			per = map[string]*Metric{}
			c.devs[key] = per
		}
		for id := range per {
			if _, ok := m.PerDevice[id]; !ok {
				delete(per, id)
			}
		}
		for id, v := range m.PerDevice {
			dm, ok := per[id]
			if !ok {
				dm = newMetric(m.Def, nil)
				per[id] = dm
			}
			dm.Capacity = v.Capacity
			dm.Stats.Update(v.Value, now)
		}
	}
}

// RecordContainerMeasures folds plugin measures into the kernels' metrics
// (kernels the collector does not track are ignored: they are gone or not
// yet measured).
func (c *Collector) RecordContainerMeasures(ms []ContainerMeasure) {
	now := c.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, m := range ms {
		for kid, v := range m.PerKernel {
			st, ok := c.kernels[kid]
			if !ok {
				continue
			}
			x, ok := st.metrics[m.Def.Key]
			if !ok {
				x = newMetric(m.Def, nil)
				st.metrics[m.Def.Key] = x
			}
			x.Capacity = v.Capacity
			x.Stats.Update(v.Value, now)
		}
	}
}
